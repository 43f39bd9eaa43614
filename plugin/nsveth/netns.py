"""Network namespaces: open and check a CNI_NETNS path, enter one on this thread.

`entered()` switches only the calling OS thread (setns), in-process: a helper
process per namespace would cost a fork (about 10 ms) where setns costs well
under a millisecond. Everything that must happen "inside" (opening a netlink
or packet socket, reading /proc/sys/net) happens in that block; sockets opened
there stay bound to the pod netns after switching back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from typing import Any

from .errors import CNIError, Code
from .netlink import Socket

CLONE_NEWNET = 0x40000000
_NS_GET_NSTYPE = 0xB703  # ioctl: which kind of namespace an nsfs fd is (Linux 4.11+)

_libc = ctypes.CDLL(None, use_errno=True)


class NotFound(Exception):
    """The netns path does not exist (the pod is gone)."""


def open_path(path: str) -> int:
    """fd of the network namespace at `path`.

    Raises NotFound if nothing is there, CNIError (code 4) if it is not a
    network namespace.
    """
    # A netns file (nsfs) is a regular file; anything else is refused before it
    # is really opened (opening a FIFO blocks, a device may act on open). The
    # check looks at an O_PATH descriptor, which opens nothing, and the real
    # open goes through that descriptor, so the file checked is the file
    # opened even if the path is swapped in between.
    try:
        where = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(path) from None
    except OSError as e:
        raise CNIError(Code.INVALID_ENV, f"failed to open netns {path!r}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(where).st_mode):
            raise CNIError(Code.INVALID_ENV, f"CNI_NETNS {path!r} is not a network namespace")
        fd = os.open(f"/proc/self/fd/{where}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise CNIError(Code.INVALID_ENV, f"failed to open netns {path!r}: {e.strerror}") from None
    finally:
        os.close(where)
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise CNIError(Code.INVALID_ENV, f"CNI_NETNS {path!r} is not a network namespace")
    return fd


@contextlib.contextmanager
def opened_pod(path: str, missing_code: int = Code.UNKNOWN_CONTAINER) -> Iterator[tuple[int, Socket, Socket]]:
    """Pod netns fd plus a netlink socket in each namespace (host, pod); refuses the plugin's own netns."""
    try:
        pod_fd = open_path(path)
    except NotFound:
        raise CNIError(missing_code, f"netns {path} does not exist") from None
    try:
        if is_own(pod_fd):
            raise CNIError(Code.INVALID_ENV, f"CNI_NETNS {path} is the plugin's own network namespace")
        with Socket() as host_sock:
            with entered(pod_fd):
                pod_sock = Socket()
            with pod_sock:
                yield pod_fd, host_sock, pod_sock
    finally:
        os.close(pod_fd)


def current() -> int:
    """fd of this thread's own network namespace (the plugin's "host" netns)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def same(fd_a: int, fd_b: int) -> bool:
    a, b = os.fstat(fd_a), os.fstat(fd_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno() or errno.EINVAL
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the block with this thread in the netns `fd`, then switch back."""
    origin = current()
    try:
        _setns(fd)
        try:
            yield
        finally:
            try:
                _setns(origin)
            except OSError as e:  # pragma: no cover - the kernel does not refuse this
                # Going on in the wrong namespace would configure the wrong host.
                os.write(2, f"nsveth: cannot return to the host netns: {e}\n".encode())
                os._exit(70)
    finally:
        os.close(origin)


# ------------------------------------------------------------------ identity
# A CNI_NETNS path outlives the namespace it named (a pid reused, a netns
# recreated at the same bind-mount path), so DEL and CHECK act inside a
# namespace only when it is the one ADD configured. ADD records its identity:
# the nsfs device and inode (inodes can be reused once the netns is freed) and
# its cookie, a 64-bit id the kernel never reuses (5.14+; read with
# getsockopt SO_NETNS_COOKIE on a socket created in the namespace).
SO_NETNS_COOKIE = 71


def cookie(fd: int) -> int | None:
    """The netns cookie of the namespace `fd`, None when the kernel has none (before 5.14)."""
    import socket

    with entered(fd):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    with sock:
        try:
            return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
        except OSError:
            return None


def identity(fd: int) -> dict[str, int | None]:
    """What ADD records about the pod netns (JSON-ready)."""
    st = os.fstat(fd)
    return {"dev": st.st_dev, "ino": st.st_ino, "cookie": cookie(fd)}


def mismatch(fd: int, recorded: object) -> str | None:
    """Why the namespace `fd` is not the recorded one, or None when it provably is.

    A record without a usable identity proves nothing: that is a mismatch too.
    """
    if not isinstance(recorded, dict):
        return "the state record holds no netns identity"
    now = identity(fd)
    want = {k: recorded.get(k) for k in ("dev", "ino", "cookie")}
    if not all(isinstance(want[k], int) for k in ("dev", "ino")):
        return "the state record holds no netns identity"
    if (now["dev"], now["ino"]) != (want["dev"], want["ino"]):
        return f"it is netns inode {now['ino']}, ADD configured inode {want['ino']}"
    if want["cookie"] is not None and now["cookie"] != want["cookie"]:
        return f"it is netns cookie {now['cookie']}, ADD configured cookie {want['cookie']} (the inode was reused)"
    return None


def is_own(fd: int) -> bool:
    """Whether `fd` is the plugin's own (host) network namespace."""
    own = current()
    try:
        return same(own, fd)
    finally:
        os.close(own)


def open_recorded(path: str, record: dict[str, Any], why: str) -> int | None:
    """fd of the netns at `path` when it is the one the record names, else None (logged).

    DEL acts inside CNI_NETNS only through this: a missing path is silent (the
    pod is gone, and what it held with it); the plugin's own netns, a
    different namespace at the path, or a record without an identity is a
    warning (`why` says what is skipped), never an error.
    """
    from . import log

    if not path:
        return None
    try:
        fd = open_path(path)
    except NotFound:
        return None
    except CNIError as e:
        log.get().warning("%s: %s", why, e.msg)
        return None
    problem = "it is the plugin's own network namespace" if is_own(fd) else mismatch(fd, record.get("netnsIdentity"))
    if problem is None:
        return fd
    log.get().warning("%s: CNI_NETNS %s is not the pod's netns: %s", why, path, problem)
    os.close(fd)
    return None
