"""Plugin mode's client of the warm server: cheap to import, and the pieces of its protocol."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
from nsveth import client, serve

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugin")


def test_client_imports_nothing_heavy():
    """Every pod operation imports the client first: it must not load json, re, enum, socket.py,
    jsonschema or pyroute2 (a client that finds no server must not slow the in-process path)."""
    code = (
        f"import os, sys; sys.path.insert(0, {PLUGIN!r}); before = set(sys.modules); "
        "from nsveth import client; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    new = set(subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True).stdout.split())
    # (os is loaded before any of nsveth, by the interpreter or the bundle's bootstrap)
    assert new <= {"__future__", "nsveth", "nsveth.client", "nsveth.timing", "_socket", "_struct", "time"}, new


@pytest.mark.parametrize(("value", "path"), [(None, client.DEFAULT_SOCKET), ("off", None), ("", None), ("/x/y.sock", "/x/y.sock")])
def test_socket_path(value, path):
    env = {} if value is None else {client.SOCKET_ENV: value}
    assert client.socket_path(env) == path


def test_request_payload_round_trips_through_the_servers_decoder():
    env = {"CNI_COMMAND": "ADD", "EMPTY": "", "EQ": "a=b=c", "UTF": "é", "BYTES": "\udcff"}
    umask, decoded = serve._decode(client._request_payload(env))
    assert decoded == env and umask == os.umask(umask) and 0 <= umask <= 0o777


@pytest.mark.parametrize("payload", [b"", b"\0\0\0", b"\0\0\x10\0", b"\0\0\0\x12novalue", b"\0\0\0\x12=x", b"\0\0\0\x12A=1\0\0B=2"])
def test_malformed_request_payloads_are_refused(payload):
    with pytest.raises(ValueError):
        serve._decode(payload)


def test_no_server_means_in_process_with_a_reason(tmp_path):
    assert client.handoff({"CNI_COMMAND": "VERSION", client.SOCKET_ENV: str(tmp_path / "none.sock")}) is None
    assert "no server at" in client.fallback_reason
    assert client.handoff({"CNI_COMMAND": "VERSION", client.SOCKET_ENV: "off"}) is None
    assert client.fallback_reason == "NSVETH_SOCKET=off"


def test_a_child_the_server_cannot_watch_is_killed_and_reaped(monkeypatch):
    """Without a pidfd (every descriptor in use) a forked request process would run unsupervised:
    the server kills and reaps it instead, and goes on."""
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "30"])

    def no_descriptors(_pid: int) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pidfd_open", no_descriptors)
    try:
        assert serve._watch(pid) is None
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
