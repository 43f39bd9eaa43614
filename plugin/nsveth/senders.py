"""The announcement sender a state record names, and whether that very sender still runs.

A record names the sender by pid and start time; neither proves who a process
is (a pid is reused, anyone can read a start time). The proof is its lock: ADD
creates `<containerID>:<ifname>.sender` in the root-only runtime dir and the
sender takes a POSIX lock on it before it drops root, so only nsveth's sender
of this attachment can hold it. Kept apart from advertise.py, which needs
netlink (pyroute2): `nsveth inspect` asks the same question without loading any of that.
"""

from __future__ import annotations

import fcntl
import os
import struct
from typing import Any

_F_GETLK = 5
_FLOCK = struct.Struct("@hhqqi4x")  # struct flock on Linux (64-bit off_t): type, whence, start, len, pid


def start_time(pid: int) -> int | None:
    """Start time of a live process (clock ticks since boot), None if there is
    none; with the pid it names one process even after pids wrap."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None  # a zombie has done its work
    return int(fields[19])


def recorded(record: Any) -> tuple[int, int] | None:
    """(pid, start time) of the sender a state record names, None if it names none (or nonsense)."""
    sender = record.get("advertiser") if isinstance(record, dict) else None
    if not isinstance(sender, dict):
        return None
    pid, start = sender.get("pid"), sender.get("start")
    if type(pid) is not int or type(start) is not int or pid <= 1 or start < 0:
        return None
    return pid, start


def lock_holder(lock_path: str) -> int | None:
    """Pid of the process holding the sender lock `lock_path`, None if none holds it.

    F_GETLK answers with the holder's pid (a POSIX lock, not an OFD one, for
    exactly that); a lock held by the calling process itself never shows, and
    that never is a sender.
    """
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        kind, _, _, _, pid = _FLOCK.unpack(fcntl.fcntl(fd, _F_GETLK, query))
    except OSError:
        return None
    finally:
        os.close(fd)
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def running(record: Any, lock_path: str) -> int | None:
    """The pid of the record's sender if that very process still runs and holds `lock_path`, else None."""
    sender = recorded(record)
    if sender is None or lock_holder(lock_path) != sender[0] or start_time(sender[0]) != sender[1]:
        return None  # finished, or the pid is someone else's now
    return sender[0]
