"""The warm server (`nsveth serve`): a served request answers byte for byte what the in-process executable does.

The same inputs go to the built executable with the server off (exe) and
through the session's server (served); stdout and the exit status must be
identical. A served Plugin also proves (from the server's log) that the
request really went through the server.
"""

from __future__ import annotations

import json
import os

import pytest
import support
from nsveth.errors import Code
from support import Plugin, with_prev

from .test_bad_input import CASES

MAC = "02:00:0a:4d:00:09"


def both(host_ns, nsveth_server):
    return Plugin(host_ns, "exe"), Plugin(host_ns, "served", nsveth_server)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_errors_are_byte_identical(host_ns, pod_ns, net, nsveth_server, case):
    _, env_over, conf_over, _, _ = case
    exe, served = both(host_ns, nsveth_server)
    env = exe.env("ADD", container_id="ctr-same", netns=pod_ns.path)
    for k, v in env_over.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    conf = net.conf()
    if isinstance(conf_over, dict):
        conf.update(conf_over)
    stdin = conf_over if isinstance(conf_over, bytes) else json.dumps(conf).encode()
    a, b = exe.call(env, stdin), served.call(env, stdin)
    assert a.status != 0 and (a.status, a.stdout) == (b.status, b.stdout)


@pytest.mark.parametrize(
    "env",
    [
        {"CNI_COMMAND": "VERSION"},
        {},  # no command: the about text on stderr, status 0
        {"CNI_COMMAND": "VERSION", "CNI_PATH": "/nonexistent"},
        {"CNI_COMMAND": "GC", "CNI_PATH": support.CNI_PATH},
        {"CNI_COMMAND": "STATUS", "CNI_PATH": support.CNI_PATH},
    ],
    ids=["version", "about", "version-odd-env", "gc", "status"],
)
def test_env_only_commands_are_byte_identical(host_ns, net, nsveth_server, env):
    exe, served = both(host_ns, nsveth_server)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    conf = net.conf("1.1.0")
    a, b = exe.call(env, conf), served.call(env, conf)
    assert (a.status, a.stdout) == (b.status, b.stdout)
    if not env.get("CNI_COMMAND"):
        assert a.stderr == b.stderr and "CNI nsveth plugin" in b.stderr


def test_add_check_del_are_byte_identical(host_ns, pod_ns, net, nsveth_server):
    """Deterministic inputs (static IPAM, a fixed pod MAC): ADD, CHECK and DEL answer the same bytes both ways."""
    exe, served = both(host_ns, nsveth_server)
    conf = net.conf(
        "1.1.0",
        ipam={"type": "static", "addresses": [{"address": "10.77.0.9/24", "gateway": "10.77.0.1"}]},
        macFromArgs=True,
    )
    replies = []
    for plugin in (exe, served, served, exe):
        kw = {"container_id": "ctr-same", "netns": pod_ns.path, "CNI_ARGS": f"IgnoreUnknown=1;MAC={MAC}"}
        add = plugin.run("ADD", conf, **kw)
        assert add.status == 0, add.stdout
        check = plugin.run("CHECK", with_prev(conf, add.json), **kw)
        again = plugin.run("ADD", conf, **kw)  # the interface exists: an error
        delete = plugin.run("DEL", with_prev(conf, add.json), **kw)
        host_mac = add.json["interfaces"][0]["mac"].encode()  # the kernel's random one: the only difference
        replies.append([(r.status, r.stdout.replace(host_mac, b"HOST-MAC")) for r in (add, check, again, delete)])
        assert "eth0" not in pod_ns.links()
    assert replies[0] == replies[1] == replies[2] == replies[3]
    assert replies[0][2][0] == 1 and json.loads(replies[0][2][1])["code"] == Code.INVALID_ENV


def test_served_request_keeps_the_callers_cwd_umask_and_stdin(host_ns, net, nsveth_server, tmp_path):
    """The request runs in the caller's working directory and umask: a relative NSVETH_TIMINGS file
    lands beside the caller, created under the caller's umask (0600 & ~0277 = 0400)."""
    served = Plugin(host_ns, "served", nsveth_server)
    os.chmod(tmp_path, 0o755)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    old = os.umask(0o277)
    try:
        reply = served.run("STATUS", net.conf("1.1.0"), NSVETH_TIMINGS="relative.timings")
    finally:
        os.umask(old)
        os.chdir(cwd)
    assert reply.status == 0, reply.stdout
    timings = tmp_path / "relative.timings"
    assert timings.exists() and "STATUS" in [json.loads(line)["command"] for line in timings.read_text().splitlines()]
    assert timings.stat().st_mode & 0o777 == 0o400


def test_no_server_runs_in_process_and_says_why_at_debug(host_ns, net, tmp_path):
    exe = Plugin(host_ns, "exe")
    missing = str(tmp_path / "no-server.sock")
    reply = exe.call(exe.env("STATUS", NSVETH_SOCKET=missing), net.conf("1.1.0", logLevel="debug"))
    assert reply.status == 0, reply.stdout
    assert f"running in-process: no server at {missing}" in reply.stderr
    quiet = exe.call(exe.env("STATUS", NSVETH_SOCKET=missing), net.conf("1.1.0"))
    assert quiet.status == 0 and "running in-process" not in quiet.stderr  # debug only
