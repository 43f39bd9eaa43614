"""One function runs a whole CNI command: environment and stdin in, stdout bytes and exit status out.

Nothing here reads os.environ or writes stdout, so tests call `run` in-process
exactly as the executable does. Heavy modules (pyroute2, jsonschema) are
imported only by the commands that need them: VERSION and bad-environment
errors never load them.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Union

from . import __version__, versions
from .errors import CNIError, Code

Stdin = Union[bytes, Callable[[], bytes]]


def about() -> str:
    return f"CNI nsveth plugin version {__version__}\nCNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n"


def run(env: Mapping[str, str], stdin: Stdin) -> tuple[bytes, int]:
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

        conf = config.load(raw, req)
        out = _execute(req, conf)
        return (json.dumps(out, indent=2).encode() + b"\n" if out is not None else b""), 0
    except CNIError as e:
        return e.to_json(reply_version), 1
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a CNI error
        traceback.print_exc(file=sys.stderr)
        return CNIError(Code.INTERNAL, f"internal error: {type(e).__name__}: {e}").to_json(reply_version), 1


def _execute(req, conf):  # type: ignore[no-untyped-def]
    from . import commands, log

    prefix = f"{req.command} {req.container_id or '-'}/{req.ifname or '-'}"
    with log.scoped(conf.log_level, conf.log_file, prefix):
        try:
            return commands.run(req, conf)
        except CNIError as e:
            log.get().error("%s (code %d) %s", e.msg, e.code, e.details)
            raise


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
