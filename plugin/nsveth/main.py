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
    sys.stderr.flush()
    timing.flush(os.environ.get("CNI_COMMAND", ""))
    # Interpreter teardown (freeing every module, atexit, GC) costs tens of ms
    # per pod operation and has nothing left to do: output is flushed, files
    # and sockets are closed by the commands, and the kernel frees the rest.
    os._exit(status)
