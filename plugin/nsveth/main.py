"""The executable's entry: the only reader of os.environ and stdin, and writer of stdout."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from . import timing

    timing.start(os.environ.get("NSVETH_TIMINGS"))
    from .dispatch import run

    out, status = run(dict(os.environ), lambda: sys.stdin.buffer.read())
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    timing.flush(os.environ.get("CNI_COMMAND", ""))
    sys.exit(status)
