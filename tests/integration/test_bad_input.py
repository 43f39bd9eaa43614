"""Bad environment, config or netns: the right CNI error code, and nothing changed on the host or in IPAM."""

from __future__ import annotations

import json

import pytest
from nsveth import versions
from nsveth.errors import Code
from support import Netns, host_veths


def snapshot(host: Netns, pod: Netns) -> tuple:
    return (host.ip_json("link"), host.ip_json("addr"), host.routes(), pod.ip_json("link"), pod.ip_json("addr"))


def assert_error(reply, code: int, *words: str) -> None:
    assert reply.status != 0
    body = reply.json  # exactly one JSON object on stdout
    assert set(body) <= {"cniVersion", "code", "msg", "details"}, body
    assert body["code"] == code, body
    for w in words:
        assert w in body["msg"] + body.get("details", ""), body
    assert "Traceback" not in reply.stderr


CASES = [
    # (name, env overrides, config mutation, expected code, words in message)
    ("missing env", {"CNI_CONTAINERID": None, "CNI_IFNAME": None}, None, Code.INVALID_ENV, ["CNI_CONTAINERID", "CNI_IFNAME"]),
    ("bad container id", {"CNI_CONTAINERID": "bad id!"}, None, Code.INVALID_ENV, ["containerID"]),
    ("ifname too long", {"CNI_IFNAME": "a" * 16}, None, Code.INVALID_ENV, ["too long"]),
    ("ifname slash", {"CNI_IFNAME": "eth/0"}, None, Code.INVALID_ENV, ["/"]),
    ("bad CNI_ARGS pair", {"CNI_ARGS": "novalue"}, None, Code.INVALID_ENV, ["CNI_ARGS"]),
    ("unknown CNI_ARGS", {"CNI_ARGS": "FOO=1"}, None, Code.INVALID_ENV, ["FOO"]),
    ("unknown command", {"CNI_COMMAND": "FROB"}, None, Code.INVALID_ENV, ["FROB"]),
    ("not json", {}, b"{nope", Code.DECODE_FAILURE, ["decoding"]),
    ("not utf-8", {}, b"\xff\xfe", Code.DECODE_FAILURE, ["decoding"]),
    ("unsupported version", {}, {"cniVersion": "9.9.9"}, Code.INCOMPATIBLE_VERSION, ["9.9.9"]),
    ("unknown field", {}, {"frobnicate": True}, Code.UNSUPPORTED_FIELD, ["frobnicate"]),
    ("mtu out of range", {}, {"mtu": 10}, Code.INVALID_CONFIG, ["mtu"]),
    ("bad network name", {}, {"name": "bad name"}, Code.INVALID_CONFIG, ["name"]),
    ("no ipam type", {}, {"ipam": {}}, Code.INVALID_CONFIG, ["ipam"]),
    ("ipam plugin missing", {}, {"ipam": {"type": "no-such-ipam"}}, Code.INVALID_CONFIG, ["no-such-ipam"]),
    ("bad mac", {}, {"runtimeConfig": {"mac": "zz:zz:zz:zz:zz:zz"}}, Code.INVALID_CONFIG, ["mac"]),
    ("multicast mac", {"CNI_ARGS": "MAC=01:00:5e:00:00:01"}, {"macFromArgs": True}, Code.INVALID_CONFIG, ["multicast"]),
    ("advertise count", {}, {"advertise": {"count": 9}}, Code.INVALID_CONFIG, ["advertise.count"]),
    ("netns missing", {"CNI_NETNS": "/run/netns/does-not-exist-nsveth"}, None, Code.UNKNOWN_CONTAINER, ["does-not-exist"]),
    ("netns not a netns", {"CNI_NETNS": "/etc/hostname"}, None, Code.INVALID_ENV, ["not a network namespace"]),
]


@pytest.mark.parametrize("name,env,mutation,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_changes_nothing(plugin, pod_ns, net, name, env, mutation, code, words):
    conf = net.conf()
    stdin = mutation if isinstance(mutation, bytes) else json.dumps({**conf, **(mutation or {})}).encode()
    full = plugin.env("ADD", container_id="ctr-bad", netns=pod_ns.path)
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    before = snapshot(plugin.host, pod_ns)
    reply = plugin.call(full, stdin)
    assert_error(reply, code, *words)
    assert snapshot(plugin.host, pod_ns) == before
    assert net.leases() == [] and net.state_files() == []


def test_own_netns_is_refused(inproc, net):
    reply = inproc.run("ADD", net.conf(), container_id="ctr-own", netns=inproc.host.path)
    assert_error(reply, Code.INVALID_ENV, "own network namespace")
    assert host_veths(inproc.host) == [] and net.leases() == []


def test_existing_interface_is_refused(plugin, pod_ns, net):
    pod_ns.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")
    before = snapshot(plugin.host, pod_ns)
    reply = plugin.run("ADD", net.conf(), container_id="ctr-exists", netns=pod_ns.path)
    assert_error(reply, Code.INVALID_ENV, "already exists")
    assert snapshot(plugin.host, pod_ns) == before and net.leases() == []


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_version_gates(inproc, pod_ns, net, version):
    """CHECK needs 0.4.0, GC and STATUS 1.1.0 (the reference skel's gates); a refusal changes nothing.
    (test_lifecycle.py runs the commands the version allows.)"""
    before = snapshot(inproc.host, pod_ns)
    calls = {
        "CHECK": ("0.4.0", inproc.run("CHECK", net.conf(version, prevResult={}), container_id="c", netns=pod_ns.path)),
        "GC": ("1.1.0", inproc.run("GC", net.conf(version))),
        "STATUS": ("1.1.0", inproc.run("STATUS", net.conf(version))),
    }
    for command, (since, reply) in calls.items():
        if versions.at_least(version, since):
            assert reply.code != Code.INCOMPATIBLE_VERSION, reply.stdout
        else:
            assert_error(reply, Code.INCOMPATIBLE_VERSION, command)
    assert snapshot(inproc.host, pod_ns) == before


def test_check_without_prev_result(inproc, pod_ns, net):
    assert_error(inproc.run("CHECK", net.conf(), container_id="c", netns=pod_ns.path), Code.INVALID_CONFIG, "prevResult")


def test_no_command_prints_about_on_stderr(exe):
    import subprocess

    from support import EXECUTABLE

    proc = subprocess.run([EXECUTABLE], input=b"", capture_output=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout == b""
    assert b"nsveth" in proc.stderr and b"1.1.0" in proc.stderr


def test_version_ignores_stdin(exe):
    reply = exe.call({"CNI_COMMAND": "VERSION"}, b"this is not json")
    assert reply.status == 0
    assert reply.json == {"cniVersion": versions.CURRENT, "supportedVersions": list(versions.SUPPORTED)}
