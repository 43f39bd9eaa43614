"""Per-attachment state files and the per-network lock, under the runtime dir.

An ADD writes its record before it asks IPAM for a lease, so whatever a
crash leaves behind (lease, host veth) is findable by DEL and GC: the record
holds the config that IPAM DEL needs and the host veth name. DEL removes it
last. Records are trusted (GC acts on them), so the runtime dir must belong to
this user and be writable by no one else, and so must every directory above
it; records are read and written through a descriptor of their directory
with the rules of safefile (no symlinks, root-owned regular files, 64 KiB).

Layout: <runtimeDir>/<network>/<containerID>:<ifname>.json, and
<runtimeDir>/<network>/<containerID>:<ifname>.sender (held by the
announcement sender while it runs), <runtimeDir>/<network>/lock (flock: ADD/DEL shared, GC exclusive; the kernel
drops a killed holder's lock, so a crash never blocks the next command).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from . import safefile
from .errors import CNIError, Code

_SUFFIX = ".json"
_SENDER_SUFFIX = ".sender"


def _secure_dir(path: str, ancestors: bool = False) -> str:
    try:
        safefile.private_dir(path, ancestors)
    except safefile.Unsafe as e:
        # The message says which rule failed: a directory owned by this user (root),
        # writable by no one else, below directories only root can change.
        raise CNIError(Code.IO_FAILURE, f"runtime dir {path} {e}") from None
    return path


def network_dir(runtime_dir: str, network: str) -> str:
    _secure_dir(runtime_dir, ancestors=True)
    return _secure_dir(os.path.join(runtime_dir, network))


def _name(container_id: str, ifname: str, suffix: str = _SUFFIX) -> str:
    return f"{container_id}:{ifname}{suffix}"


def _path(runtime_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(runtime_dir, network, _name(container_id, ifname))


def sender_lock(runtime_dir: str, network: str, container_id: str, ifname: str) -> str:
    """The file the attachment's announcement sender holds a POSIX lock on while it runs (see advertise)."""
    return os.path.join(runtime_dir, network, _name(container_id, ifname, _SENDER_SUFFIX))


def write(runtime_dir: str, network: str, container_id: str, ifname: str, record: dict[str, Any]) -> None:
    """Replace the record atomically (temp file, rename, in the network dir opened once)."""
    final = _path(runtime_dir, network, container_id, ifname)
    try:
        dir_fd = safefile.open_dir(os.path.dirname(final))
    except (OSError, safefile.Unsafe) as e:
        raise CNIError(Code.IO_FAILURE, f"cannot write state file {final}: its directory {_why(e)}") from None
    try:
        safefile.write_atomic(dir_fd, os.path.basename(final), json.dumps(record, sort_keys=True).encode())
    except OSError as e:
        raise CNIError(Code.IO_FAILURE, f"cannot write state file {final}: {e.strerror}") from None
    finally:
        os.close(dir_fd)


def read(runtime_dir: str, network: str, container_id: str, ifname: str) -> dict[str, Any] | None:
    """The attachment's record; None when it has none.

    Code 5 when there is one nsveth cannot use: a symlink, not a regular
    file, not owned by root or writable by others, over 64 KiB, not a JSON
    object (nested too deep included). Records are trusted (DEL and GC act on
    them), so such a record is treated like an unusable runtime dir: ADD and
    CHECK fail naming it, DEL cleans up by name (and removes it), GC releases
    the attachment by name.
    """
    path = _path(runtime_dir, network, container_id, ifname)
    try:
        dir_fd = safefile.open_dir(os.path.dirname(path))
    except FileNotFoundError:
        return None
    except (OSError, safefile.Unsafe) as e:
        raise CNIError(Code.IO_FAILURE, f"state record {path} is unusable: its directory {_why(e)}") from None
    try:
        data = safefile.read_trusted(os.path.basename(path), safefile.RECORD_LIMIT, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except safefile.Unsafe as e:
        raise CNIError(Code.IO_FAILURE, f"state record {path} is unusable: it {e}") from None
    finally:
        os.close(dir_fd)
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise CNIError(Code.IO_FAILURE, f"state record {path} is unusable: not JSON ({type(e).__name__})") from None
    if not isinstance(record, dict):
        raise CNIError(Code.IO_FAILURE, f"state record {path} is unusable: not a JSON object")
    return record


def _why(e: BaseException) -> str:
    return str(e) if isinstance(e, safefile.Unsafe) else (getattr(e, "strerror", None) or str(e))


def remove(runtime_dir: str, network: str, container_id: str, ifname: str) -> None:
    """Remove the record and the sender's lock file (whatever they are: a symlink goes, not its target)."""
    for path in (_path(runtime_dir, network, container_id, ifname), sender_lock(runtime_dir, network, container_id, ifname)):
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            from . import log

            log.get().warning("cannot remove %s: %s", path, e.strerror)


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
        return os.lstat(_path(runtime_dir, network, container_id, ifname)).st_mtime_ns
    except OSError:
        return None
