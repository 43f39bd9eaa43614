"""Phase timings of one run of the executable, for the benchmark and for slow-ADD debugging.

kubelet starts a fresh plugin process for every pod operation, so where the
milliseconds of one ADD go (interpreter start, imports, validation, the IPAM
exec, netlink, sysctls) is the question the benchmark in bench/ answers. The
commands call `mark(name)` at the end of each phase; a mark is one
`monotonic_ns()` and one list append, and nothing at all unless `main.py`
started collection (the in-process test runner never does).

`NSVETH_TIMINGS=<file>` makes the executable append one JSON line per run to
that file: pid, command, peak RSS, and the marks as [name, CLOCK_MONOTONIC ns,
process CPU ns] triples (CPU time shows the work itself on a loaded machine;
it leaves out child processes such as the IPAM delegate). CLOCK_MONOTONIC is system wide, so a caller that noted the time before
spawning the plugin can tell how long the interpreter took to reach the first
mark ("start", taken when this module is imported, first thing in main.py).
At logLevel debug the same phases are logged as durations.
"""

# (No `from __future__ import annotations`: see main.py.)

import os
import time

# typing's own TYPE_CHECKING would import typing (start-up time); mypy treats any name so called the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from resource import struct_rusage

_T0 = time.monotonic_ns(), time.process_time_ns()
_marks: list[tuple[str, int, int]] | None = None
_sink: str | None = None


def start(sink: str | None, origin: tuple[int, int] | None = None) -> None:
    """Collect marks from here on (the executable only); append them to `sink` at flush.

    `origin`: the (monotonic, CPU) ns the first mark gets; default this module's import
    (a served request passes the moment it was forked)."""
    global _marks, _sink
    _marks = [("start", *(origin or _T0))]
    _sink = sink or None


def mark(name: str) -> None:
    if _marks is not None:
        _marks.append((name, time.monotonic_ns(), time.process_time_ns()))


def collecting() -> bool:
    return _marks is not None


def durations() -> list[tuple[str, float]]:
    """(phase, ms) for each mark after the first: the time since the previous mark."""
    if not _marks:
        return []
    return [(name, (t - prev) / 1e6) for (_, prev, _), (name, t, _) in zip(_marks, _marks[1:], strict=False)]


def summary() -> str:
    return " ".join(f"{name}={ms:.1f}ms" for name, ms in durations())


def flush(command: str) -> None:
    """Append this run's record to the sink; never fails the command."""
    if _marks is None or not _sink:
        return
    import resource

    mark("exit")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # JSON by hand: a served request's client has not imported json, and
    # importing it (with re) would be most of the client's CPU time; the names
    # are this module's marks.
    marks = ",".join(f"[{_json_str(name)},{t},{c}]" for name, t, c in _marks)
    record = (
        f'{{"pid": {os.getpid()}, "command": {_json_str(command)}, "maxrss_kb": {usage.ru_maxrss}, '
        f'"children_cpu_ns": {_cpu_ns(resource.getrusage(resource.RUSAGE_CHILDREN))}, "marks": [{marks}]}}\n'
    )
    try:
        fd = os.open(_sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, record.encode())
        finally:
            os.close(fd)
    except OSError as e:
        os.write(2, f"nsveth: cannot write timings to {_sink}: {e.strerror}\n".encode())


def _cpu_ns(usage: "struct_rusage") -> int:
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def _json_str(text: str) -> str:
    """A JSON string literal of `text` (printable ASCII as is, the rest as UTF-16 escapes)."""
    out = []
    for ch in text:
        if " " <= ch <= "~" and ch not in '"\\':
            out.append(ch)
        else:
            units = ch.encode("utf-16-be", "surrogatepass")
            out += [f"\\u{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2)]
    return '"' + "".join(out) + '"'
