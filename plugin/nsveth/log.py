"""Per-command logging to stderr and, when configured, a log file; never stdout.

The logger lives in a context variable rather than in logging's global
registry, so concurrent in-process runs (tests call `dispatch.run` from many
threads) never share handlers.

The log file is opened as safefile.open_log opens it (no symlink, no FIFO,
regular files only, 0600); one that cannot be used costs one warning on
stderr and the run goes on without it: a log must never fail or hang a pod
operation. Each line is one write(2) on an O_APPEND descriptor, so lines of
concurrent plugin processes never interleave.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator

from . import safefile

LEVELS = ("debug", "info", "warning", "error")
INFO = logging.INFO
_FORMAT = "%(asctime)s nsveth[%(process)d] %(levelname)s %(message)s"
_default = logging.Logger("nsveth")
_default.addHandler(logging.StreamHandler(sys.stderr))
_default.setLevel(logging.WARNING)
_current: contextvars.ContextVar[logging.Logger] = contextvars.ContextVar("nsveth_logger", default=_default)


def get() -> logging.Logger:
    return _current.get()


class _AppendHandler(logging.Handler):
    """Whole lines appended to a descriptor, one write each."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self.fd, (self.format(record) + "\n").encode(errors="backslashreplace"))
        except Exception:  # noqa: BLE001 - a full disk must not fail the pod operation
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


class _OneLine(logging.Formatter):
    """Each record one line: a newline in a message (an IPAM plugin's error, a field name from
    the config) is written as \\n, so no input can start a line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


@contextlib.contextmanager
def scoped(level: str, log_file: str | None, prefix: str) -> Iterator[logging.Logger]:
    """A logger for one command; lines carry `prefix` (command, container, ifname)."""
    logger = logging.Logger("nsveth")
    logger.setLevel(level.upper())
    # The prefix carries CNI_COMMAND, CNI_CONTAINERID and CNI_IFNAME as the runtime gave them:
    # a "%" there is text, not a format field.
    fmt = _OneLine(_FORMAT.replace("%(message)s", f"{prefix.replace('%', '%%')} %(message)s"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        try:
            handlers.append(_AppendHandler(safefile.open_log(log_file)))
        except safefile.Unsafe as e:
            print(f"nsveth: warning: not logging to {log_file}: it {e}", file=sys.stderr)
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


def field(value: object) -> str:
    """A value for a `key=value` log field: as is when plain, else JSON-quoted (a newline or
    space from a container ID or pod name must not forge or split a line)."""
    text = str(value)
    if text and text.isprintable() and " " not in text and '"' not in text and "=" not in text:
        return text
    return json.dumps(text)


def fields(pairs: list[tuple[str, object]]) -> str:
    return " ".join(f"{k}={field(v)}" for k, v in pairs if v not in (None, ""))
