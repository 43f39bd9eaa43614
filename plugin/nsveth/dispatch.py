"""One function runs a whole CNI command: environment and stdin in, stdout bytes and exit status out.

Nothing here reads os.environ or writes stdout, so tests call `run` in-process
exactly as the executable does. Heavy modules (pyroute2, jsonschema) are
imported only by the commands that need them: VERSION and bad-environment
errors never load them.

Every command but VERSION ends with one `info` line saying what happened
(pod, container, netns, ifname, host veth, addresses, result, duration), and
a failure is logged at `error`, both to stderr and to the config's logFile.
A failure found before the config is usable (an invalid config) is logged
too, with logFile and logLevel taken from the raw JSON when they can be read
there; one in the environment, found before stdin is read, only on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import __version__, timing, versions
from .errors import CNIError, Code

if TYPE_CHECKING:  # annotations only: VERSION and environment errors never load these
    import logging

    from .config import NetConf
    from .request import Request

Stdin = bytes | Callable[[], bytes]


def about() -> str:
    return f"CNI nsveth plugin version {__version__}\nCNI protocol versions supported: {', '.join(versions.SUPPORTED)}\n"


def run(env: Mapping[str, str], stdin: Stdin, note: str = "") -> tuple[bytes, int]:
    """`note`: logged at debug level once the config's log settings are known
    (why a warm server did not run this request)."""
    if not env.get("CNI_COMMAND"):
        sys.stderr.write(about())
        return b"", 0
    started = time.monotonic()
    reply_version = versions.CURRENT
    raw: bytes | None = None
    configured = False
    try:
        from . import request

        req = request.parse(env)  # a bad environment is answered without reading stdin, as skel does
        if req.command == "VERSION":
            return json.dumps(versions.report()).encode() + b"\n", 0
        raw = _read(stdin)
        reply_version = _version_hint(raw) or reply_version
        from . import config, validation_cache

        timing.mark("import config")
        conf = config.load(raw, req, validation_cache.validate)
        timing.mark("config")
        configured = True
        out = _execute(req, conf, started, note)
        reply = json.dumps(out, indent=2).encode() + b"\n" if out is not None else b""
        timing.mark("result")
        return reply, 0
    except CNIError as e:
        if not configured:
            _log_unconfigured(env, raw, e, started)
        return e.to_json(reply_version), 1
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a CNI error
        import traceback  # only here: it costs ~2 ms to import on every run

        traceback.print_exc(file=sys.stderr)
        return CNIError(Code.INTERNAL, f"internal error: {type(e).__name__}: {e}").to_json(reply_version), 1


def _execute(req: Request, conf: NetConf, started: float, note: str = "") -> dict[str, Any] | None:
    from . import commands, log

    timing.mark("import commands")
    with log.scoped(conf.log_level, conf.log_file, _prefix(req.command, req.container_id, req.ifname)) as logger:
        if note:
            logger.debug("running in-process: %s", note)
        outcome = "error 999"
        out = None
        try:
            out = commands.run(req, conf)
            outcome = "ok"
            return out
        except CNIError as e:
            outcome = f"error {e.code}"
            logger.error("%s (code %d) %s", e.msg, e.code, e.details)
            raise
        except Exception as e:  # a bug: run() answers code 999 and prints the traceback on stderr
            logger.error("internal error: %s: %s", type(e).__name__, e)
            raise
        finally:
            if timing.collecting():
                logger.debug("timings: %s", timing.summary())
            if logger.isEnabledFor(log.INFO):  # the line is built only when it is written
                ips = (out or {}).get("ips") if req.command == "ADD" else _prev_addresses(conf)
                _summary(logger, req.env, req.command, outcome, started, conf.name, req.netns, ips)


def _prefix(command: str, container_id: str, ifname: str) -> str:
    from . import log

    return f"{command} {log.field(container_id or '-')}/{log.field(ifname or '-')}"


def _prev_addresses(conf: NetConf) -> list[dict[str, str]] | None:
    prev = conf.prev_result
    return [{"address": str(ip.address)} for ip in prev.ips] if prev is not None else None


def _summary(
    logger: logging.Logger,
    env: Mapping[str, str],
    command: str,
    outcome: str,
    started: float,
    network: str | None,
    netns: str,
    ips: object,
) -> None:
    """The one line per command that says what happened to which pod."""
    from . import log

    cid, ifname = env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", "")
    host = None
    if cid and ifname and command in ("ADD", "DEL", "CHECK"):
        from .attachment import host_ifname

        host = host_ifname(cid, ifname)
    args = _pod_args(env.get("CNI_ARGS", ""))
    pod = f"{args.get('K8S_POD_NAMESPACE', '')}/{args['K8S_POD_NAME']}" if args.get("K8S_POD_NAME") else None
    addresses = ",".join(str(ip.get("address")) for ip in ips if isinstance(ip, dict)) if isinstance(ips, list) else None
    logger.info(
        "%s",
        log.fields(
            [
                ("result", outcome),
                ("pod", pod),
                ("containerID", cid),
                ("netns", netns),
                ("ifname", ifname if command in ("ADD", "DEL", "CHECK") else ""),
                ("hostVeth", host),
                ("addresses", addresses),
                ("network", network),
                ("duration", f"{(time.monotonic() - started) * 1000:.1f}ms"),
            ]
        ),
    )


def _pod_args(text: str) -> dict[str, str]:
    """CNI_ARGS as key/value pairs, leniently (for the log only: request.parse_args judges it)."""
    pairs = {}
    for item in text.split(";"):
        k, sep, v = item.partition("=")
        if sep:
            pairs[k] = v
    return pairs


def _log_unconfigured(env: Mapping[str, str], raw: bytes | None, e: CNIError, started: float) -> None:
    """Log a failure found before the config was usable, to the logFile the raw config names if any."""
    from . import log

    doc = _loose(raw)
    log_file = doc.get("logFile")
    if not (isinstance(log_file, str) and log_file.startswith("/") and "\0" not in log_file):
        log_file = None
    level = doc.get("logLevel")
    if level not in log.LEVELS:
        level = "warning"
    network = doc.get("name") if isinstance(doc.get("name"), str) else None
    command = env.get("CNI_COMMAND", "")
    with log.scoped(level, log_file, _prefix(command, env.get("CNI_CONTAINERID", ""), env.get("CNI_IFNAME", ""))) as logger:
        logger.error("%s (code %d) %s", e.msg, e.code, e.details)
        if logger.isEnabledFor(log.INFO):
            _summary(logger, env, command, f"error {e.code}", started, network, env.get("CNI_NETNS", ""), None)


def _loose(raw: bytes | None) -> dict[str, Any]:
    """The config as a JSON object when it decodes as one, else {}."""
    try:
        doc = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


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
