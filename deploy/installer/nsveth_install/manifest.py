"""The install manifest: what this installer put on the node, so uninstall and
the no-clobber rule can tell its files from everybody else's.

It lives at <bindir>/nsveth.d/install.json and not in the CNI conf dir on
purpose: libcni loads every `*.json` file in the conf dir as a network config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import InstallError, fsatomic

FILENAME = "install.json"
FORMAT = 1


@dataclass
class OwnedFile:
    """A file we wrote. sha256s lists every content of ours it may hold: while a
    rewrite is in flight both the old and the new hash are recorded, so a crash
    between recording and renaming cannot make our own file look foreign."""

    path: str
    sha256s: list[str]

    def owns(self, path: Path, current_sha256: str | None) -> bool:
        return self.path == str(path) and current_sha256 in self.sha256s


@dataclass
class Manifest:
    bundles: list[str] = field(default_factory=list)  # version dirs, oldest first
    files: dict[str, OwnedFile] = field(default_factory=dict)  # role -> file
    dirs: list[str] = field(default_factory=list)  # directories the installer created, parents first

    @property
    def current_bundle(self) -> str | None:
        return self.bundles[-1] if self.bundles else None

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "bundles": self.bundles,
            "files": {role: {"path": f.path, "sha256s": f.sha256s} for role, f in sorted(self.files.items())},
        }
        if self.dirs:
            doc["dirs"] = self.dirs
        return (json.dumps(doc, indent=2) + "\n").encode()


def load(versions_dir: Path) -> Manifest:
    path = versions_dir / FILENAME
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return Manifest()
    except (OSError, ValueError) as e:
        raise InstallError(f"install manifest {path} is unreadable ({e}); "
                           "inspect it, or remove it and re-run with --force") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InstallError(f"install manifest {path} has an unknown format")
    try:
        return Manifest(
            bundles=[str(b) for b in doc["bundles"]],
            files={role: OwnedFile(str(f["path"]), [str(h) for h in f["sha256s"]])
                   for role, f in doc["files"].items()},
            dirs=[str(d) for d in doc.get("dirs", [])],
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise InstallError(f"install manifest {path} is malformed: {e!r}") from e


def save(versions_dir: Path, manifest: Manifest) -> bool:
    """Write the manifest if it changed; True when it was written."""
    path = versions_dir / FILENAME
    data = manifest.to_bytes()
    if fsatomic.sha256_file(path) == fsatomic.sha256_bytes(data):
        return False
    fsatomic.write_file(path, data)
    return True
