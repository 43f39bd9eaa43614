"""Reading and writing /proc/sys/net files of the calling thread's netns, the one way.

/proc/sys/net resolves to the netns of the task that opens the file, so a
call made inside `netns.entered(pod)` reads or writes the pod's value.
Callers pass a path relative to /proc/sys/net as a list of segments (so an
interface name containing dots stays one segment). Every file is reached by
`Tree`'s no-follow walk: a pod's sysctl keys come from its config, and a
walk that follows nothing reaches nothing outside /proc/sys/net.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection, Sequence

from .errors import CNIError, Code

ROOT = "/proc/sys/net"


def read(*segments: str) -> str:
    with Tree() as tree:
        fd = tree.open(("net", *segments), os.O_RDONLY)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def write(value: str, *segments: str) -> None:
    with Tree() as tree:
        fd = tree.open(("net", *segments), os.O_WRONLY)
    try:
        write_fd(fd, value)
    finally:
        os.close(fd)


def ensure(value: str, *segments: str) -> bool:
    """Write `value` unless already set; True if it wrote."""
    if read(*segments) == value:
        return False
    write(value, *segments)
    return True


def enable_forwarding(families: Collection[int]) -> None:
    """Forwarding on for each IP family (4, 6) the host routes for a pod; never turned off, other pods rely on it."""
    if 4 in families:
        ensure("1", "ipv4", "ip_forward")
    if 6 in families:
        ensure("1", "ipv6", "conf", "all", "forwarding")


def no_accept_ra(ifname: str) -> None:
    """A host-side link never learns routes from router advertisements."""
    with contextlib.suppress(FileNotFoundError):  # a host without IPv6
        write("0", "ipv6", "conf", ifname, "accept_ra")


def set_ipv6(ifname: str, wanted: bool) -> None:
    """IPv6 on `ifname` only when wanted, so an IPv4-only pod joins no multicast groups and takes no RAs."""
    try:
        ensure("0" if wanted else "1", "ipv6", "conf", ifname, "disable_ipv6")
    except FileNotFoundError:
        if wanted:
            raise CNIError(Code.KERNEL, "IPv6 is not available in the pod netns") from None


class Tree:
    """/proc/sys/net of the calling thread's netns, opened once; files reached by a no-follow walk."""

    def __init__(self) -> None:
        self.fd = os.open(ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.dev = os.fstat(self.fd).st_dev

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, segments: Sequence[str], flags: int) -> int:
        """fd of /proc/sys/net/<segments[1:]>; OSError (ENOENT, ELOOP, EACCES...) or ValueError when unsafe."""
        if not segments or segments[0] != "net" or len(segments) < 2:
            raise ValueError("not under /proc/sys/net")
        for s in segments[1:]:
            if not s or s in (".", "..") or "/" in s or "\0" in s:
                raise ValueError(f"unsafe path segment {s!r}")
        dir_fd = self.fd
        try:
            for s in segments[1:-1]:
                fd = os.open(s, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
                if dir_fd != self.fd:
                    os.close(dir_fd)
                dir_fd = fd
                if os.fstat(fd).st_dev != self.dev:
                    raise ValueError(f"{s} is on another filesystem")
            fd = os.open(segments[-1], flags | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        finally:
            if dir_fd != self.fd:
                os.close(dir_fd)
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):  # O_PATH|O_NOFOLLOW opens the link itself
                raise ValueError("a symbolic link is on its path")
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_dev != self.dev:
                raise ValueError("on another filesystem")
        except BaseException:
            os.close(fd)
            raise
        return fd


def read_fd(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode(errors="replace").rstrip("\n")


def write_fd(fd: int, value: str) -> None:
    data = value.encode()
    n = os.pwrite(fd, data, 0)
    if n != len(data):
        raise OSError(errno.EIO, f"short write ({n} of {len(data)} bytes)")
