"""Per-command logging to stderr and, when configured, a log file; never stdout.

The logger lives in a context variable rather than in logging's global
registry, so concurrent in-process runs (tests call `dispatch.run` from many
threads) never share handlers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator

_FORMAT = "%(asctime)s nsveth[%(process)d] %(levelname)s %(message)s"
_default = logging.Logger("nsveth")
_default.addHandler(logging.StreamHandler(sys.stderr))
_default.setLevel(logging.WARNING)
_current: contextvars.ContextVar[logging.Logger] = contextvars.ContextVar("nsveth_logger", default=_default)


def get() -> logging.Logger:
    return _current.get()


@contextlib.contextmanager
def scoped(level: str, log_file: str | None, prefix: str) -> Iterator[logging.Logger]:
    """A logger for one command; lines carry `prefix` (command, container, ifname)."""
    logger = logging.Logger("nsveth")
    logger.setLevel(level.upper())
    fmt = logging.Formatter(_FORMAT.replace("%(message)s", f"{prefix} %(message)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file))
        except OSError as e:
            print(f"nsveth: cannot open log file {log_file}: {e}", file=sys.stderr)
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    token = _current.set(logger)
    try:
        yield logger
    finally:
        _current.reset(token)
        for h in handlers:
            h.close()
