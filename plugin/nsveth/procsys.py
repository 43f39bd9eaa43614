"""Reading and writing /proc/sys/net files of the calling thread's netns.

/proc/sys/net resolves to the netns of the task that opens the file, so a
call made inside `netns.entered(pod)` reads or writes the pod's value.
Callers pass a path relative to /proc/sys/net as a list of segments (so an
interface name containing dots stays one segment).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection

from .errors import CNIError, Code

ROOT = "/proc/sys/net"


def path(*segments: str) -> str:
    return os.path.join(ROOT, *segments)


def read(*segments: str) -> str:
    with open(path(*segments), "rb") as f:
        return f.read().decode().rstrip("\n")


def write(value: str, *segments: str) -> None:
    fd = os.open(path(*segments), os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, value.encode())
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
