"""ipam._spawn, the delegate runner (posix_spawn, config through a memfd): no deadlock on big
input or output, exit status and stdout kept, env passed, only fds 0-2 inherited."""

from __future__ import annotations

import os

import pytest
from nsveth import ipam
from nsveth.errors import CNIError, Code
from nsveth.request import Request


def script(tmp_path, body: str) -> str:
    path = tmp_path / "delegate"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_big_input_comes_back_whole(tmp_path):
    data = os.urandom(3 << 20)  # far more than a pipe buffer, both ways
    status, out = ipam._spawn("/bin/cat", {}, data)
    assert status == 0 and out == data


def test_status_stdout_and_env(tmp_path):
    delegate = script(tmp_path, 'read line; echo "$CNI_COMMAND $line"; exit 3\n')
    status, out = ipam._spawn(delegate, {"CNI_COMMAND": "ADD", "PATH": "/usr/bin:/bin"}, b"hello\n")
    assert status == 3 and out == b"ADD hello\n"


def test_signal_is_a_negative_status(tmp_path):
    delegate = script(tmp_path, "kill -9 $$\n")
    status, out = ipam._spawn(delegate, {"PATH": "/usr/bin:/bin"}, b"")
    assert status == -9 and out == b""


def test_only_standard_fds_reach_the_delegate(tmp_path):
    r, w = os.pipe()
    os.set_inheritable(r, True)  # as a runtime might hand us one
    try:
        delegate = script(tmp_path, f"[ -e /proc/self/fd/{r} ] && echo leaked; echo done\n")
        status, out = ipam._spawn(delegate, {"PATH": "/usr/bin:/bin"}, b"")
        assert not os.get_inheritable(r)
    finally:
        os.close(r)
        os.close(w)
    assert status == 0 and out == b"done\n"


def test_missing_or_unrunnable_delegate_is_code_102(tmp_path):
    req = Request("ADD", "c1", "/run/netns/x", "eth0", {}, (str(tmp_path),), {"CNI_COMMAND": "ADD"})
    not_executable = tmp_path / "plain"
    not_executable.write_text("{}")
    for binary in (str(tmp_path / "absent"), str(tmp_path), str(not_executable)):
        with pytest.raises(CNIError) as e:
            ipam._exec(binary, "ADD", req, b"{}", "host-local")
        assert e.value.code == Code.DELEGATE_FAILED and "cannot run IPAM plugin" in e.value.msg


def test_failing_delegate_reports_its_error(tmp_path):
    req = Request("ADD", "c1", "/run/netns/x", "eth0", {}, (str(tmp_path),), {"CNI_COMMAND": "ADD"})
    delegate = script(tmp_path, 'echo \'{"code": 7, "msg": "no range"}\'; exit 1\n')
    with pytest.raises(CNIError) as e:
        ipam._exec(delegate, "ADD", req, b"{}", "host-local")
    assert e.value.code == Code.INVALID_CONFIG and "no range" in e.value.msg
