"""Reading and writing /proc/sys/net files of the calling thread's netns.

/proc/sys/net resolves to the netns of the task that opens the file, so a
call made inside `netns.entered(pod)` reads or writes the pod's value.
Callers pass a path relative to /proc/sys/net as a list of segments (so an
interface name containing dots stays one segment).
"""

from __future__ import annotations

import os

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
