"""The PyInstaller one-dir bundle: content hash, copy, and old-version pruning.

Installed layout in the CNI bin dir:

    <bindir>/nsveth            -> nsveth.d/<hash>/nsveth   (relative symlink)
    <bindir>/nsveth.d/<hash>/  one complete copy of dist/nsveth/ per version

The bundle cannot be installed as a single file: the executable loads its
`_internal/` directory at start, so the whole directory is one unit. Each
version lives in its own directory named by its content hash, which makes a
re-run with the same image a no-op and lets the switch between versions be
one atomic symlink rename.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from . import InstallError, fsatomic

EXECUTABLE = "nsveth"
HASH_LEN = 16


def tree_hash(root: Path) -> str:
    """Content hash of a directory tree: names, types, executability, bytes, link targets.

    The same function hashes the image's bundle and an installed copy, so an
    installed directory can be verified against its name.
    """
    h = hashlib.sha256()
    for rel, kind, detail in _walk(root):
        h.update(f"{kind}\0{rel}\0{detail}\0".encode())
    return h.hexdigest()[:HASH_LEN]


def _walk(root: Path):
    """(relative path, kind, detail) for every entry under root, in a fixed order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                yield rel, "l", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                yield rel, "d", ""
            elif stat.S_ISREG(st.st_mode):
                executable = "x" if st.st_mode & 0o111 else "-"
                yield rel, "f", f"{executable}:{fsatomic.sha256_file(path)}"
            else:
                raise InstallError(f"bundle {root}: unsupported file type at {rel}")


def check_source(root: Path) -> None:
    """The bundle to install must hold an executable `nsveth` at its top."""
    exe = root / EXECUTABLE
    if not root.is_dir():
        raise InstallError(f"bundle directory {root} does not exist")
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise InstallError(f"bundle {root} has no executable {EXECUTABLE!r}")


def install_copy(source: Path, versions_dir: Path, name: str) -> Path:
    """Copy `source` to versions_dir/name, complete and durable before it has that name."""
    final = versions_dir / name
    tmp = fsatomic.temp_name(versions_dir, name)
    try:
        _copy_tree(source, tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsatomic.fsync_dir(versions_dir)
    return final


def _copy_tree(source: Path, dest: Path) -> None:
    os.mkdir(dest, 0o755)
    for rel, kind, _ in _walk(source):
        src, dst = source / rel, dest / rel
        if kind == "d":
            os.mkdir(dst, 0o755)
        elif kind == "l":
            os.symlink(os.readlink(src), dst)
        else:
            _copy_file(src, dst)
    # Directories last and deepest first: their entries are all in place then.
    for dirpath, _, _ in sorted(os.walk(dest), key=lambda t: -len(t[0])):
        fsatomic.fsync_dir(Path(dirpath))


def _copy_file(src: Path, dst: Path) -> None:
    exec_bits = os.stat(src).st_mode & 0o111
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        shutil.copyfileobj(fin, fout)
        fout.flush()
        os.fsync(fout.fileno())
    # Normalised modes: the host copy must not inherit odd bits (setuid, group
    # write) from whatever built the image, but must keep what is executable.
    os.chmod(dst, 0o644 | (exec_bits and 0o111))


def remove_version(versions_dir: Path, name: str) -> None:
    """Delete one installed version directory, if it is still there."""
    path = versions_dir / name
    if path.is_symlink() or not path.exists():
        return
    # Rename first so a crash mid-rmtree leaves a temp name (swept later), never
    # a half-deleted directory under a version name that looks valid.
    doomed = fsatomic.temp_name(versions_dir, f"del-{name}")
    os.rename(path, doomed)
    shutil.rmtree(doomed)
    fsatomic.fsync_dir(versions_dir)


def sweep_temps(versions_dir: Path) -> None:
    """Remove temp entries left by an installer that was killed mid-way.

    Only called with the install lock held, so no live installer owns them.
    """
    for entry in versions_dir.iterdir():
        if entry.name.startswith(fsatomic.TMP_PREFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
