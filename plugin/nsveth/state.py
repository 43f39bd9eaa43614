"""Per-attachment state files and the per-network lock, under the runtime dir.

An ADD writes its record before it asks IPAM for a lease, so whatever a
crash leaves behind (lease, host veth) is findable by DEL and GC: the record
holds the config that IPAM DEL needs and the host veth name. DEL removes it
last. Records are trusted (GC acts on them), so the runtime dir must belong to
this user and be writable by no one else.

Layout: <runtimeDir>/<network>/<containerID>:<ifname>.json, and
<runtimeDir>/<network>/lock (flock: ADD/DEL shared, GC exclusive; the kernel
drops a killed holder's lock, so a crash never blocks the next command).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from .errors import CNIError, Code

_SUFFIX = ".json"


def _secure_dir(path: str) -> str:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise CNIError(Code.IO_FAILURE, f"cannot create runtime dir {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise CNIError(
            Code.IO_FAILURE,
            f"runtime dir {path} must be a directory owned by uid {os.geteuid()} and writable by no one else",
        )
    return path


def network_dir(runtime_dir: str, network: str) -> str:
    _secure_dir(runtime_dir)
    return _secure_dir(os.path.join(runtime_dir, network))


def _path(runtime_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(runtime_dir, network, f"{container_id}:{ifname}{_SUFFIX}")


def write(runtime_dir: str, network: str, container_id: str, ifname: str, record: dict[str, Any]) -> None:
    """Replace the record atomically (temp file, rename).

    Not fsynced: a record describes kernel objects (veths, netns) that only a
    reboot, not a plugin crash, can lose, and a reboot loses them too (the
    runtime dir is normally tmpfs). The rename alone is atomic for every
    reader. On a disk-backed runtime dir under I/O load the fsync cost 3-7 ms
    of each ADD (bench/).
    """
    final = _path(runtime_dir, network, container_id, ifname)
    tmp = f"{final}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(record, sort_keys=True).encode())
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CNIError(Code.IO_FAILURE, f"cannot write state file {final}: {e.strerror}") from None


def read(runtime_dir: str, network: str, container_id: str, ifname: str) -> dict[str, Any] | None:
    path = _path(runtime_dir, network, container_id, ifname)
    try:
        with open(path, "rb") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: the caller still cleans up what it can find by name
    return record if isinstance(record, dict) else {}


def remove(runtime_dir: str, network: str, container_id: str, ifname: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(_path(runtime_dir, network, container_id, ifname))


def sweep_temporaries(runtime_dir: str, network: str) -> list[str]:
    """Remove temp files of writers killed between write and rename; call only under the exclusive lock."""
    directory = os.path.join(runtime_dir, network)
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".tmp")]
    except FileNotFoundError:
        return []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    return names


def attachments(runtime_dir: str, network: str) -> list[tuple[str, str]]:
    """(containerID, ifname) of every record of the network."""
    try:
        names = os.listdir(os.path.join(runtime_dir, network))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(_SUFFIX) and ":" in name:
            cid, _, ifname = name[: -len(_SUFFIX)].partition(":")
            out.append((cid, ifname))
    return sorted(out)


def networks_of(runtime_dir: str, container_id: str, ifname: str) -> list[str]:
    """Names of the networks that hold a record of (containerID, ifname)."""
    try:
        names = os.listdir(runtime_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Dot-directories (.delegates) are caches, not networks.
    return sorted(
        n for n in names if not n.startswith(".") and os.path.isfile(_path(runtime_dir, n, container_id, ifname))
    )


@contextlib.contextmanager
def lock(runtime_dir: str, network: str, exclusive: bool) -> Iterator[int]:
    """Hold the network's lock; yields the lock file's mtime (ns) as it was before waiting.

    An exclusive holder (GC) first touches the file, so the value is "when GC
    started" on the file system's own clock: records written after it (by
    ADDs that ran while GC waited for the lock) compare as newer.
    """
    path = os.path.join(network_dir(runtime_dir, network), "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise CNIError(Code.IO_FAILURE, f"cannot open lock file {path}: {e.strerror}") from None
    try:
        if exclusive:
            os.utime(fd)
        started = os.fstat(fd).st_mtime_ns
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield started
    finally:
        os.close(fd)


def networks(runtime_dir: str) -> list[str]:
    """Names of the networks that have a state dir (the dot-dirs beside them are caches and locks).

    Raises OSError when the runtime dir exists but cannot be read; none: [].
    """
    try:
        names = os.listdir(runtime_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(runtime_dir, n)))


def written_at(runtime_dir: str, network: str, container_id: str, ifname: str) -> int | None:
    """mtime (ns) of the attachment's record, None if it has none."""
    try:
        return os.stat(_path(runtime_dir, network, container_id, ifname)).st_mtime_ns
    except OSError:
        return None
