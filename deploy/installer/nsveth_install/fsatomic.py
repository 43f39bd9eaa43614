"""Crash-safe file system updates.

Everything a kubelet or container runtime reads (the conflist, the `nsveth`
symlink, the bundle directory) is created under a temporary name in the same
directory and renamed into place: rename(2) within one file system is atomic,
so a reader sees either the old object or the new one, never a partial one.
The fsync calls make the new content durable before the name points at it, so
a power cut cannot leave a complete-looking name over empty data.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

TMP_PREFIX = ".nsveth-tmp-"


def temp_name(directory: Path, hint: str) -> Path:
    """A fresh, unguessable name next to the final one (same file system).

    The random suffix goes last so the temp name never ends in `.conflist`,
    `.conf` or `.json`: libcni picks config files by extension and must not
    load a conflist that is still being written.
    """
    return directory / f"{TMP_PREFIX}{hint}-{secrets.token_hex(6)}"


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    """Hash of a regular file's content, None when there is no such file."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers never see a partial file."""
    tmp = temp_name(path.parent, path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # O_CREAT's mode is filtered by the umask; the runtime must read it.
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def replace_symlink(path: Path, target: str) -> None:
    """Point the symlink `path` at `target`; exec(path) never finds it missing.

    Unlink-then-symlink would leave a window with no `path` at all, in which a
    kubelet's exec fails with ENOENT; renaming a new link over the old does not.
    """
    tmp = temp_name(path.parent, path.name)
    os.symlink(target, tmp)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)


def remove_file(path: Path) -> bool:
    """Unlink `path` (file or symlink); False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
