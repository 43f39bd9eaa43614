"""Named points of ADD where a test can make the plugin die by SIGKILL.

Test-only hook. `reached(req, name)` does nothing unless the request's
environment (`Request.env`, the environment the runtime passed; never
os.environ directly, so in-process callers decide) has
NSVETH_TEST_CRASH_AT set to `name`; then the process sends itself SIGKILL
on the spot: no undo journal, no finally blocks, no exit handlers, no flush,
exactly like an OOM kill or `kill -9` from a node agent. The crash tests
(tests/robustness/test_crash.py) run the built executable with it set to each
point and prove that the runtime's follow-up DEL, and separately a GC with
an empty valid-attachments list, return the host to its prior state.

Points, in ADD order (each named after what is already done):

    after-state       the "adding" state record is written, nothing else
    after-ipam        IPAM returned a lease
    after-veth        the veth pair exists (host end up, pod end in the pod)
    after-host        host side configured (gateway address, route, forwarding)
    after-addresses   pod side configured (addresses, routes, link up)
    after-sysctls     the pod's sysctls are applied
    mid-announcement  between two rounds of unsolicited ARP / NA

The cost when unset is one dict lookup. Production runtimes never set the
variable; a value that names no point is ignored (nothing to kill at).
"""

from __future__ import annotations

import os
import signal

from .request import Request

ENV = "NSVETH_TEST_CRASH_AT"

POINTS = (
    "after-state",
    "after-ipam",
    "after-veth",
    "after-host",
    "after-addresses",
    "after-sysctls",
    "mid-announcement",
)


def reached(req: Request, name: str) -> None:
    """ADD has reached point `name`: die here if the test asked for it."""
    if req.env.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
