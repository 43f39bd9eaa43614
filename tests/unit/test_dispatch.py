"""dispatch.run: the whole command contract seen from outside (stdout bytes, exit status, stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from nsveth import commands, dispatch, versions
from nsveth.errors import CNIError, Code

PLUGIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugin")

FULL = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def env(command: str | None, **extra: str) -> dict[str, str]:
    e = dict(FULL, **extra)
    if command is not None:
        e["CNI_COMMAND"] = command
    return e


def conf(version: str = "1.1.0", **fields) -> bytes:
    d = {"cniVersion": version, "name": "net1", "type": "nsveth", "ipam": {"type": "host-local"}, **fields}
    return json.dumps(d).encode()


def no_stdin() -> bytes:
    raise AssertionError("stdin must not be read")


def one_object(out: bytes) -> dict:
    """stdout holds exactly one JSON object and nothing else."""
    text = out.decode()
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == ""
    assert isinstance(obj, dict)
    return obj


def error_reply(out: bytes, status: int) -> dict:
    assert status == 1
    body = one_object(out)
    assert set(body) <= {"cniVersion", "code", "msg", "details"}
    assert type(body["code"]) is int and body["msg"]
    return body


# ---------------------------------------------------------------- VERSION
@pytest.mark.parametrize("stdin", [no_stdin, b"", b"not json", conf("9.9.9")], ids=["raises", "empty", "garbage", "bad-version"])
def test_version_ignores_stdin(stdin):
    out, status = dispatch.run({"CNI_COMMAND": "VERSION"}, stdin)
    assert status == 0
    assert one_object(out) == {"cniVersion": "1.1.0", "supportedVersions": list(versions.SUPPORTED)}


@pytest.mark.parametrize(
    "junk", [{}, {"CNI_ARGS": "FOO=1"}, {"CNI_CONTAINERID": "/x"}, {"CNI_IFNAME": "a:b"}], ids=["clean", "args", "cid", "ifname"]
)
def test_version_with_full_env(junk):
    out, status = dispatch.run(env("VERSION", **junk), no_stdin)
    assert status == 0
    assert one_object(out)["cniVersion"] == versions.CURRENT


# -------------------------------------------------------- no CNI_COMMAND
@pytest.mark.parametrize("e", [{}, env(None), {"CNI_COMMAND": ""}], ids=["empty-env", "no-command", "empty-command"])
def test_no_command_prints_about(e, capsys):
    out, status = dispatch.run(e, no_stdin)
    assert (out, status) == (b"", 0)
    err = capsys.readouterr()
    assert err.out == ""
    assert "nsveth" in err.err
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in err.err


# ----------------------------------------------------------- env errors
@pytest.mark.parametrize(
    "e,fragment",
    [
        ({"CNI_COMMAND": "ADD"}, "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"),
        (env("FOO"), "unknown CNI_COMMAND: FOO"),
        (env("ADD", CNI_IFNAME="x" * 16), "interface name is too long"),
        (env("DEL", CNI_CONTAINERID="-bad"), "invalid characters in containerID"),
        (env("ADD", CNI_ARGS="FOO=1"), "unknown args"),
    ],
)
def test_env_errors(e, fragment):
    out, status = dispatch.run(e, no_stdin)
    body = error_reply(out, status)
    assert body["code"] == Code.INVALID_ENV
    assert fragment in body["msg"]
    assert body["cniVersion"] == versions.CURRENT


# ---------------------------------------------------------- config errors
@pytest.mark.parametrize(
    "stdin,code,version",
    [
        (b"", Code.DECODE_FAILURE, versions.CURRENT),
        (b"{", Code.DECODE_FAILURE, versions.CURRENT),
        (b"\xff", Code.DECODE_FAILURE, versions.CURRENT),
        (b"[1]", Code.DECODE_FAILURE, versions.CURRENT),
        (b'{"cniVersion": "0.4.0", "x": NaN}', Code.DECODE_FAILURE, "0.4.0"),  # refused, but its version is still legible
        (b"[" * 50000, Code.DECODE_FAILURE, versions.CURRENT),
        (b'{"cniVersion": "0.4.0", "cniVersion": "0.4.0"}', Code.INVALID_CONFIG, "0.4.0"),
        (conf("9.9.9"), Code.INCOMPATIBLE_VERSION, versions.CURRENT),
        (conf("0.3.1", bogus=1), Code.UNSUPPORTED_FIELD, "0.3.1"),
        (conf("0.4.0", mtu=1), Code.INVALID_CONFIG, "0.4.0"),
        (conf("1.0.0", name="bad name"), Code.INVALID_CONFIG, "1.0.0"),
        (json.dumps({"name": "n", "type": "nsveth"}).encode(), Code.INCOMPATIBLE_VERSION, versions.CURRENT),
    ],
)
def test_config_errors_carry_config_version(stdin, code, version):
    out, status = dispatch.run(env("ADD"), stdin)
    body = error_reply(out, status)
    assert body["code"] == code
    assert body["cniVersion"] == version


def test_check_refused_for_old_config():
    out, status = dispatch.run(env("CHECK"), conf("0.3.1"))
    body = error_reply(out, status)
    assert body["code"] == Code.INCOMPATIBLE_VERSION
    assert body["cniVersion"] == "0.3.1"


def test_stdin_read_failure_is_io_error():
    def broken() -> bytes:
        raise OSError(5, "Input/output error")

    out, status = dispatch.run(env("ADD"), broken)
    body = error_reply(out, status)
    assert body["code"] == Code.IO_FAILURE
    assert "stdin" in body["msg"]


# ------------------------------------------------- commands (patched out)
@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_unexpected_exception_is_internal_error(monkeypatch, capsys, version):
    def boom(req, conf):
        raise KeyError("surprise")

    monkeypatch.setattr(commands, "run", boom)
    out, status = dispatch.run(env("ADD"), conf(version))
    body = error_reply(out, status)
    assert body["code"] == Code.INTERNAL == 999
    assert body["cniVersion"] == version
    assert body["msg"] == "internal error: KeyError: 'surprise'"
    assert b"Traceback" not in out and b"boom" not in out
    err = capsys.readouterr()
    assert err.out == ""
    assert "Traceback" in err.err and "surprise" in err.err  # the trace goes to stderr only


def test_unexpected_exception_in_parsing_is_internal_error(monkeypatch):
    from nsveth import request

    def boom(e):
        raise ZeroDivisionError("x")

    monkeypatch.setattr(request, "parse", boom)
    out, status = dispatch.run(env("ADD"), no_stdin)
    body = error_reply(out, status)
    assert body["code"] == Code.INTERNAL
    assert "ZeroDivisionError" in body["msg"]


@pytest.mark.parametrize("code", [Code.KERNEL, Code.TRY_AGAIN, Code.UNKNOWN_CONTAINER, Code.CHECK_FAILED])
def test_command_error_passed_through(monkeypatch, capsys, code):
    def fail(req, conf):
        raise CNIError(code, "it failed", "because")

    monkeypatch.setattr(commands, "run", fail)
    out, status = dispatch.run(env("ADD"), conf("1.0.0"))
    assert error_reply(out, status) == {"cniVersion": "1.0.0", "code": int(code), "msg": "it failed", "details": "because"}
    assert "it failed" in capsys.readouterr().err  # logged as well


@pytest.mark.parametrize("command,version", [("ADD", "1.1.0"), ("DEL", "0.3.0"), ("CHECK", "0.4.0"), ("GC", "1.1.0"), ("STATUS", "1.1.0")])
def test_command_receives_request_and_config(monkeypatch, command, version):
    seen = []

    def record(req, conf):
        seen.append((req, conf))
        return {"cniVersion": conf.cni_version, "ips": []} if req.command == "ADD" else None

    monkeypatch.setattr(commands, "run", record)
    stdin = conf(version)
    out, status = dispatch.run(env(command), lambda: stdin)
    assert status == 0
    (req, cf), = seen
    assert req.command == command and req.ifname == "eth0"
    assert cf.raw == stdin and cf.cni_version == version
    if command == "ADD":
        assert one_object(out) == {"cniVersion": version, "ips": []}
    else:
        assert out == b""


def test_stdin_bytes_or_callable(monkeypatch):
    monkeypatch.setattr(commands, "run", lambda req, conf: None)
    assert dispatch.run(env("DEL"), conf()) == (b"", 0)
    assert dispatch.run(env("DEL"), lambda: conf()) == (b"", 0)


def test_env_not_mutated(monkeypatch):
    monkeypatch.setattr(commands, "run", lambda req, conf: None)
    e = env("DEL")
    before = dict(e)
    dispatch.run(e, conf())
    assert e == before


# ------------------------------------------------ heavy imports stay out
PROBE = textwrap.dedent(
    """
    import json, sys
    from nsveth import dispatch
    out, status = dispatch.run(json.loads(sys.argv[1]), {stdin})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("pyroute2", "jsonschema") or m == "nsveth.netlink")
    print(json.dumps({{"status": status, "out": out.decode(), "heavy": heavy}}))
    """
)


def probe(e: dict, stdin: str = "no_stdin") -> dict:
    code = PROBE.format(stdin="(lambda: (_ for _ in ()).throw(AssertionError('read')))" if stdin == "no_stdin" else repr(stdin.encode()))
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(e)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": PLUGIN_DIR},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "e,stdin,status",
    [
        ({"CNI_COMMAND": "VERSION"}, "no_stdin", 0),
        ({}, "no_stdin", 0),
        ({"CNI_COMMAND": "ADD"}, "no_stdin", 1),
        (env("BOGUS"), "no_stdin", 1),
        (env("ADD", CNI_IFNAME="a/b"), "no_stdin", 1),
        (env("ADD", CNI_ARGS="X=1"), "no_stdin", 1),
        (env("ADD"), "{", 1),
        (env("ADD"), conf("9.9.9").decode(), 1),
        (env("GC"), conf("1.0.0").decode(), 1),
    ],
    ids=["VERSION", "about", "missing-env", "unknown-command", "bad-ifname", "bad-args", "bad-json", "bad-version", "gc-old-version"],
)
def test_light_paths_do_not_import_heavy_modules(e, stdin, status):
    got = probe(e, stdin)
    assert got["status"] == status
    assert got["heavy"] == []


def test_schema_errors_do_not_import_pyroute2():
    got = probe(env("ADD"), conf(bogus=1).decode())
    assert got["status"] == 1
    assert json.loads(got["out"])["code"] == Code.UNSUPPORTED_FIELD
    assert "jsonschema" in got["heavy"]  # the probe does see the modules it looks for
    assert not [m for m in got["heavy"] if m.startswith("pyroute2") or m == "nsveth.netlink"]
