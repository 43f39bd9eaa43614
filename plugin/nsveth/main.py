"""The executable's entry: the only reader of os.environ and stdin, and writer of stdout."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    # A run lasts a fraction of a second and its objects die with it: the
    # cyclic GC would only re-scan the modules being imported (~5-10 ms).
    gc.disable()
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
