"""One function runs a whole CNI command: environment and stdin in, stdout bytes and exit status out.

Nothing here reads os.environ or writes stdout, so tests call `run` in-process
exactly as the executable does. Heavy modules (pyroute2, jsonschema) are
imported only by the commands that need them: VERSION and bad-environment
errors never load them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Union

from . import __version__, timing, versions
from .errors import CNIError, Code

Stdin = Union[bytes, Callable[[], bytes]]


def about() -> str:
    return f"CNI nsveth plugin version {__version__}\nCNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n"


def run(env: Mapping[str, str], stdin: Stdin, note: str = "") -> tuple[bytes, int]:
    """`note`: logged at debug level once the config's log settings are known
    (why a warm server did not run this request)."""
    if not env.get("CNI_COMMAND"):
        sys.stderr.write(about())
        return b"", 0
    reply_version = versions.CURRENT
    try:
        from . import request

        req = request.parse(env)
        if req.command == "VERSION":
            return json.dumps(versions.report()).encode() + b"\n", 0
        raw = _read(stdin)
        reply_version = _version_hint(raw) or reply_version
        from . import config

        timing.mark("import config")
        conf = config.load(raw, req)
        timing.mark("config")
        out = _execute(req, conf, note)
        reply = json.dumps(out, indent=2).encode() + b"\n" if out is not None else b""
        timing.mark("result")
        return reply, 0
    except CNIError as e:
        return e.to_json(reply_version), 1
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a CNI error
        import traceback  # only here: it costs ~2 ms to import on every run

        traceback.print_exc(file=sys.stderr)
        return CNIError(Code.INTERNAL, f"internal error: {type(e).__name__}: {e}").to_json(reply_version), 1


def _execute(req, conf, note=""):  # type: ignore[no-untyped-def]
    from . import commands, log

    timing.mark("import commands")
    prefix = f"{req.command} {req.container_id or '-'}/{req.ifname or '-'}"
    with log.scoped(conf.log_level, conf.log_file, prefix) as logger:
        if note:
            logger.debug("running in-process: %s", note)
        try:
            return commands.run(req, conf)
        except CNIError as e:
            log.get().error("%s (code %d) %s", e.msg, e.code, e.details)
            raise
        finally:
            if timing.collecting():
                logger.debug("timings: %s", timing.summary())


def _read(stdin: Stdin) -> bytes:
    try:
        return stdin() if callable(stdin) else stdin
    except OSError as e:
        raise CNIError(Code.IO_FAILURE, f"error reading network config from stdin: {e}") from None


def _version_hint(raw: bytes) -> str | None:
    """The config's cniVersion for error replies, when it is readable and supported."""
    try:
        version = json.loads(raw).get("cniVersion")
    except (ValueError, AttributeError, RecursionError):
        return None
    return version if version in versions.SUPPORTED else None
