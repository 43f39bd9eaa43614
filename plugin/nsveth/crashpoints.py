"""ADD's named steps: one call is the step's timing mark and, for some, a point where a test can make the plugin die by SIGKILL.

`step(req, name)` marks the time (see timing.py) and, when `name` is one of
the steps in POINT_AFTER, reaches that crash point. A crash point is a
test-only hook: it does nothing unless the request's environment
(`Request.env`, the environment the runtime passed; never os.environ
directly, so in-process callers decide) has NSVETH_TEST_CRASH_AT set to the
point's name; then the process sends itself SIGKILL on the spot: no undo
journal, no finally blocks, no exit handlers, no flush, exactly like an OOM
kill or `kill -9` from a node agent. The crash tests
(tests/robustness/test_crash.py) run the built executable with it set to each
point and prove that the runtime's follow-up DEL, and separately a GC with
an empty valid-attachments list, return the host to its prior state.

Points, in ADD order (each named after what is already done), and the step they follow:

    after-state       "state adding"   the "adding" state record is written, nothing else
    after-ipam        "ipam"           IPAM returned a lease
    after-veth        "sysctl host"    the veth pair exists (host end up, pod end in the pod)
    after-host        "host side"      host side configured (gateway address, route, forwarding)
    after-addresses   "pod side"       pod side configured (addresses, routes, link up)
    after-sysctls     "sysctl config"  the pod's sysctls are applied (if any)
    mid-announcement  "state added"    between two rounds of unsolicited ARP / NA

Only ADD calls `step`; the other commands mark their phases with timing.mark
and have no crash points. The cost when the variable is unset is one dict
lookup. Production runtimes never set it; a value that names no point is
ignored (nothing to kill at).
"""

from __future__ import annotations

import os
import signal

from . import timing
from .request import Request

ENV = "NSVETH_TEST_CRASH_AT"

# step name -> the crash point right after it, in ADD order
POINT_AFTER = {
    "state adding": "after-state",
    "ipam": "after-ipam",
    "sysctl host": "after-veth",
    "host side": "after-host",
    "pod side": "after-addresses",
    "sysctl config": "after-sysctls",
    "state added": "mid-announcement",
}
POINTS = tuple(POINT_AFTER.values())


def step(req: Request, name: str) -> None:
    """ADD has done step `name`: mark the time, then die here if it is the crash point the test asked for."""
    timing.mark(name)
    point = POINT_AFTER.get(name)
    if point is not None:
        reached(req, point)


def reached(req: Request, point: str) -> None:
    """ADD has reached crash point `point`: die here if the test asked for it."""
    if req.env.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
