"""Install and uninstall, each as one story over small steps.

Install first decides everything (renders the conflist, checks that the chain's
plugins exist and that nothing foreign would be overwritten) and only then
changes the node, so bad input leaves the node exactly as it was. The changes
come in the order a container runtime can live with at every moment: the new
bundle is complete before the `nsveth` symlink points at it, and the binary is
in place before a conflist that names it appears.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import InstallError, bundle, conflist, fsatomic, manifest
from .manifest import Manifest, OwnedFile

log = logging.getLogger("nsveth-install")

VERSIONS_DIRNAME = "nsveth.d"
KEEP_VERSIONS = 2  # current + previous


@dataclass(frozen=True)
class Paths:
    bundle: Path  # dist/nsveth/ as shipped in the image
    bin_dir: Path  # the node's CNI bin dir (mounted)
    conf_dir: Path  # the node's CNI conf dir (mounted)
    conflist_name: str
    allowlist_dest: Path | None = None  # where the nsveth sysctl allowlist goes

    @property
    def versions_dir(self) -> Path:
        return self.bin_dir / VERSIONS_DIRNAME

    @property
    def symlink(self) -> Path:
        return self.bin_dir / bundle.EXECUTABLE

    @property
    def conflist(self) -> Path:
        return self.conf_dir / self.conflist_name


@dataclass(frozen=True)
class Desired:
    """What the node should hold after install."""

    conflist: bytes | None  # None: no conflist is managed (a hand install of the plugin alone)
    allowlist: bytes | None  # None: no allowlist wanted (and ours is removed)


@dataclass(frozen=True)
class Outcome:
    bundle: str
    changes: tuple[str, ...]


def install(paths: Paths, desired: Desired, force: bool = False) -> Outcome:
    """Make the node hold the bundle and `desired`; a re-run with equal input changes nothing."""
    bundle.check_source(paths.bundle)
    version = bundle.tree_hash(paths.bundle)
    # A fresh host has no CNI bin dir yet (Debian's plugins live in /usr/lib/cni).
    made = _make_dirs(paths.bin_dir)
    with _locked(paths.bin_dir):
        record = manifest.load(paths.versions_dir)
        _record_dirs(record, made)
        _check_version_dir(paths, record, version)
        if desired.conflist is not None:
            _check_chain_plugins(paths.bin_dir, desired.conflist)
        _check_symlink_ours(paths.symlink, force)
        if desired.conflist is not None:
            _check_may_write(paths.conflist, desired.conflist, record.files.get("conflist"), force)
        if paths.allowlist_dest and desired.allowlist is not None:
            _check_may_write(paths.allowlist_dest, desired.allowlist, record.files.get("allowlist"), force)

        changes: list[str] = []
        _place_bundle(paths, record, version, changes)
        _switch_symlink(paths, version, changes)
        _prune_versions(paths, record, changes)
        if desired.conflist is not None:
            _put_file(paths, record, "conflist", paths.conflist, desired.conflist, changes)
        if paths.allowlist_dest:
            _put_allowlist(paths, record, desired.allowlist, changes)
        manifest.save(paths.versions_dir, record)
        return Outcome(version, tuple(changes))


def uninstall(paths: Paths, force: bool = False) -> tuple[str, ...]:
    """Remove what the manifest says we installed; anything else stays."""
    if not paths.bin_dir.is_dir():
        raise InstallError(f"CNI bin dir {paths.bin_dir} does not exist")
    with _locked(paths.bin_dir):
        record = manifest.load(paths.versions_dir)
        changes: list[str] = []
        # Config first: once no conflist names nsveth, the runtime stops calling it.
        for role, owned in sorted(record.files.items()):
            _remove_owned(Path(owned.path), owned, force, changes)
            del record.files[role]
        if _symlink_is_ours(paths.symlink):
            fsatomic.remove_file(paths.symlink)
            changes.append(f"removed {paths.symlink}")
        if paths.versions_dir.is_dir():
            for name in record.bundles:
                bundle.remove_version(paths.versions_dir, name)
                changes.append(f"removed {paths.versions_dir / name}")
            bundle.sweep_temps(paths.versions_dir)
            fsatomic.remove_file(paths.versions_dir / manifest.FILENAME)
            _rmdir_if_empty(paths.versions_dir, changes)
        # Directories install created (a fresh host's /opt/cni/bin, /etc/cni/nsveth), deepest
        # first, and only when empty: anything someone else put there keeps them.
        for directory in reversed(record.dirs):
            try:
                os.rmdir(directory)
            except OSError:
                continue
            changes.append(f"removed {directory}")
        return tuple(changes)


def rollback(paths: Paths) -> tuple[str, ...]:
    """Switch back to the previous version (the one kept beside the current).

    The two swap places, so a second rollback returns to where the first began.
    The previous copy is verified against its content hash first: a damaged one
    is refused, the current version stays."""
    with _locked_existing(paths.bin_dir):
        record = manifest.load(paths.versions_dir)
        if len(record.bundles) < 2:
            raise InstallError(f"no previous version in {paths.versions_dir} to roll back to "
                               f"(installed: {', '.join(record.bundles) or 'none'})")
        previous, current = record.bundles[-2], record.bundles[-1]
        _check_symlink_ours(paths.symlink, force=False)
        if not _copy_intact(paths.versions_dir / previous, previous):
            raise InstallError(f"previous version {paths.versions_dir / previous} is missing or damaged; "
                               "not rolling back (install that version's bundle again instead)")
        changes: list[str] = []
        record.bundles[-2:] = [current, previous]
        manifest.save(paths.versions_dir, record)
        _switch_symlink(paths, previous, changes)
        return tuple(changes)


@dataclass(frozen=True)
class Status:
    symlink_target: str | None  # what <bindir>/nsveth points at (None: absent)
    ours: bool  # the symlink is the installer's
    current: str | None
    previous: str | None
    intact: bool  # the current version's files match their content hash
    files: dict[str, str]  # role -> path of the other files the installer owns

    @property
    def installed(self) -> bool:
        return self.ours and self.current is not None and self.intact

    def to_dict(self) -> dict:
        return {"installed": self.installed, "symlink": self.symlink_target, "ours": self.ours,
                "current": self.current, "previous": self.previous, "intact": self.intact, "files": self.files}


def status(paths: Paths) -> Status:
    """What is installed, read-only (no lock needed: every change is an atomic rename)."""
    record = manifest.load(paths.versions_dir) if paths.versions_dir.is_dir() else manifest.Manifest()
    link = paths.symlink
    target = os.readlink(link) if link.is_symlink() else (str(link) if os.path.lexists(link) else None)
    current = record.current_bundle
    return Status(
        symlink_target=target, ours=_symlink_is_ours(link), current=current,
        previous=record.bundles[-2] if len(record.bundles) > 1 else None,
        intact=current is not None and _copy_intact(paths.versions_dir / current, current)
        and target == f"{VERSIONS_DIRNAME}/{current}/{bundle.EXECUTABLE}",
        files={role: f.path for role, f in sorted(record.files.items())})


@contextlib.contextmanager
def _locked_existing(bin_dir: Path) -> Iterator[None]:
    if not bin_dir.is_dir():
        raise InstallError(f"CNI bin dir {bin_dir} does not exist")
    with _locked(bin_dir):
        yield


@contextlib.contextmanager
def _locked(bin_dir: Path) -> Iterator[None]:
    """Serialise installers on one node (an old and a new DaemonSet pod may
    overlap during a rolling update). flock on the bin dir itself needs no lock
    file that could be left behind."""
    try:
        fd = os.open(bin_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InstallError(f"CNI bin dir {bin_dir}: {e.strerror}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- checks: run before any change ------------------------------------------

def _check_chain_plugins(bin_dir: Path, conflist_bytes: bytes) -> None:
    """Every other plugin in the chain must already be in the bin dir.

    A conflist naming a missing plugin makes every pod ADD on the node fail;
    refusing here keeps the node's previous config and the pod unready instead.
    """
    missing = [name for name in conflist.required_plugins(conflist_bytes)
               if name != bundle.EXECUTABLE and not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise InstallError(f"plugins named in the conflist are missing from {bin_dir}: {', '.join(missing)}")


def _symlink_is_ours(link: Path) -> bool:
    return link.is_symlink() and os.readlink(link).startswith(VERSIONS_DIRNAME + "/")


def _check_symlink_ours(link: Path, force: bool) -> None:
    if os.path.lexists(link) and not _symlink_is_ours(link) and not force:
        raise InstallError(f"{link} exists and was not installed by nsveth-install; "
                           "refusing to replace it (use --force)")


def _check_may_write(path: Path, data: bytes, owned: OwnedFile | None, force: bool) -> None:
    """Refuse to overwrite a file that somebody else wrote.

    A file whose content already equals what we would write is adopted: taking
    it over clobbers nothing, and it is what a crash right after our rename and
    before the manifest update leaves behind.
    """
    if path.is_dir():
        raise InstallError(f"{path} is a directory")
    current = fsatomic.sha256_file(path)
    if current is None or current == fsatomic.sha256_bytes(data) or force:
        return
    if owned is None or not owned.owns(path, current):
        raise InstallError(f"{path} exists and was not written by nsveth-install (or was changed "
                           "since); refusing to overwrite it (use --force)")


# -- changes ----------------------------------------------------------------

def _place_bundle(paths: Paths, record: Manifest, version: str, changes: list[str]) -> None:
    """Make a complete copy of the bundle exist under its content-hash name."""
    paths.versions_dir.mkdir(mode=0o755, exist_ok=True)
    bundle.sweep_temps(paths.versions_dir)
    target = paths.versions_dir / version
    if _copy_intact(target, version):
        _record_bundle(paths, record, version)
        return
    if os.path.lexists(target):
        # A recorded copy that no longer matches its hash was damaged on the
        # node; it cannot run correctly anyway, so it is replaced.
        bundle.remove_version(paths.versions_dir, version)
    _record_bundle(paths, record, version)  # recorded first: a crash leaves it prunable
    bundle.install_copy(paths.bundle, paths.versions_dir, version)
    changes.append(f"installed bundle {target}")


def _copy_intact(target: Path, version: str) -> bool:
    return target.is_dir() and not target.is_symlink() and bundle.tree_hash(target) == version


def _check_version_dir(paths: Paths, record: Manifest, version: str) -> None:
    """A directory under our version name that we did not record and that does
    not match the bundle is not ours to replace."""
    target = paths.versions_dir / version
    if os.path.lexists(target) and version not in record.bundles and not _copy_intact(target, version):
        raise InstallError(f"{target} exists, does not match the bundle and was not installed "
                           "by nsveth-install; remove it")


def _record_bundle(paths: Paths, record: Manifest, version: str) -> None:
    if record.current_bundle == version:
        return
    if version in record.bundles:
        record.bundles.remove(version)
    record.bundles.append(version)
    manifest.save(paths.versions_dir, record)


def _switch_symlink(paths: Paths, version: str, changes: list[str]) -> None:
    # Relative, so the link is right both here (bin dir mounted under /host)
    # and on the node, where the kubelet resolves it.
    target = f"{VERSIONS_DIRNAME}/{version}/{bundle.EXECUTABLE}"
    if paths.symlink.is_symlink() and os.readlink(paths.symlink) == target:
        return
    fsatomic.replace_symlink(paths.symlink, target)
    changes.append(f"{paths.symlink} -> {target}")


def _prune_versions(paths: Paths, record: Manifest, changes: list[str]) -> None:
    """Keep the current and the previous version, delete older ones we installed.

    The previous one stays because a plugin process started just before the
    switch may still be loading its `_internal/` files from it.
    """
    for name in record.bundles[:-KEEP_VERSIONS]:
        bundle.remove_version(paths.versions_dir, name)
        changes.append(f"pruned {paths.versions_dir / name}")
    del record.bundles[:-KEEP_VERSIONS]


def _put_file(paths: Paths, record: Manifest, role: str, path: Path, data: bytes,
              changes: list[str]) -> None:
    """Write an owned file if its content differs, keeping the manifest's claim valid throughout."""
    new = fsatomic.sha256_bytes(data)
    old_owned = record.files.get(role)
    current = fsatomic.sha256_file(path)
    if current != new:
        claims = [current] if old_owned and old_owned.owns(path, current) else []
        record.files[role] = OwnedFile(str(path), claims + [new])
        manifest.save(paths.versions_dir, record)
        made = _make_dirs(path.parent)
        if made:
            _record_dirs(record, made)
            manifest.save(paths.versions_dir, record)
        fsatomic.write_file(path, data)
        changes.append(f"wrote {path}")
    record.files[role] = OwnedFile(str(path), [new])
    if old_owned and old_owned.path != str(path):
        # The file was renamed (e.g. another conflist name): drop our old copy.
        _remove_owned(Path(old_owned.path), old_owned, False, changes)


def _put_allowlist(paths: Paths, record: Manifest, data: bytes | None, changes: list[str]) -> None:
    if data is not None:
        _put_file(paths, record, "allowlist", paths.allowlist_dest, data, changes)
    elif "allowlist" in record.files:
        # The allowlist was dropped from the ConfigMap: remove ours.
        _remove_owned(Path(record.files["allowlist"].path), record.files.pop("allowlist"), False, changes)


def _remove_owned(path: Path, owned: OwnedFile, force: bool, changes: list[str]) -> None:
    current = fsatomic.sha256_file(path)
    if current is None:
        return
    if owned.owns(path, current) or force:
        fsatomic.remove_file(path)
        changes.append(f"removed {path}")
    else:
        log.warning("leaving %s in place: it changed since nsveth-install wrote it", path)


def _make_dirs(directory: Path) -> list[Path]:
    """mkdir -p; returns the directories it created, parents first."""
    missing = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    return list(reversed(missing))


def _record_dirs(record: Manifest, made: list[Path]) -> None:
    for d in made:
        if str(d) not in record.dirs:
            record.dirs.append(str(d))


def _rmdir_if_empty(directory: Path, changes: list[str]) -> None:
    try:
        directory.rmdir()
    except OSError:
        log.warning("leaving %s in place: it holds files nsveth-install did not put there", directory)
        return
    fsatomic.fsync_dir(directory.parent)
    changes.append(f"removed {directory}")
