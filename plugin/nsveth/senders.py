"""The announcement sender a state record names (pid + start time), and whether it still runs.

Kept apart from advertise.py, which needs netlink (pyroute2): `nsveth
inspect` asks whether a sender is alive without loading any of that.
"""

from __future__ import annotations

from typing import Any


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


def running(record: Any) -> int | None:
    """The pid of the record's sender if that very process still runs, else None."""
    sender = recorded(record)
    if sender is None or start_time(sender[0]) != sender[1]:
        return None  # finished (the pid may belong to someone else now)
    return sender[0]
