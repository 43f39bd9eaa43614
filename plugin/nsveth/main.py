"""The executable's entry: the only reader of os.environ and stdin, and writer of stdout."""

from __future__ import annotations

import os
import sys


def main() -> None:
    from .dispatch import run

    out, status = run(dict(os.environ), lambda: sys.stdin.buffer.read())
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.exit(status)
