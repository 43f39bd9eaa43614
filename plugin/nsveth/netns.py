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

from .errors import CNIError, Code

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
    try:
        # A netns file (nsfs) is a regular file. Anything else is refused before
        # it is opened: opening a FIFO blocks forever, a device may act on open.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CNIError(Code.INVALID_ENV, f"CNI_NETNS {path!r} is not a network namespace")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise NotFound(path) from None
    except OSError as e:
        raise CNIError(Code.INVALID_ENV, f"failed to open netns {path!r}: {e.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise CNIError(Code.INVALID_ENV, f"CNI_NETNS {path!r} is not a network namespace")
    return fd


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
