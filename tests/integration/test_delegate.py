"""Delegation to IPAM through a recording stand-in: version negotiation and its cache,
GC and STATUS forwarding, and what CHECK and DEL ask of the delegate.

`fake-ipam` (written per test) logs every call, answers VERSION with the
versions the test chose, refuses other versions with code 1 as a real
plugin does, answers GC and STATUS itself (STATUS with the code the test
chose), and hands ADD/DEL/CHECK to Debian's host-local.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from nsveth.errors import Code
from support import CNI_PATH, with_prev

FAKE = r"""#!/usr/bin/python3 -IS
import json, os, sys
raw = sys.stdin.buffer.read()
conf = json.loads(raw or b"{}")
cmd = os.environ["CNI_COMMAND"]
spec = json.load(open(os.environ["FAKE_IPAM_SPEC"]))
with open(spec["log"], "a") as f:
    f.write(json.dumps([cmd, conf.get("cniVersion")]) + "\n")
def fail(code, msg):
    print(json.dumps({"cniVersion": "1.0.0", "code": code, "msg": msg}))
    sys.exit(1)
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": spec["versions"]}))
    sys.exit(0)
if conf.get("cniVersion") not in spec["versions"]:
    fail(1, "incompatible CNI versions")
if cmd == "STATUS":
    if spec.get("status"):
        fail(spec["status"], "fake-ipam is not ready")
    sys.exit(0)
if cmd == "GC":
    sys.exit(0)
fd = os.memfd_create("stdin")  # host-local reads the same config
os.write(fd, raw)
os.lseek(fd, 0, 0)
os.dup2(fd, 0)
os.execv("/usr/lib/cni/host-local", ["host-local"])
"""


@pytest.fixture
def fake(tmp_path, net):
    """The stand-in on a private CNI_PATH; returns (conf, calls(), set_spec(**kw))."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "fake-ipam"
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    spec_file = tmp_path / "spec.json"

    def set_spec(**kw):
        spec_file.write_text(json.dumps({"log": str(log), "versions": ["0.4.0", "1.0.0"], **kw}))

    def calls():
        out = [tuple(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
        log.write_text("")
        return out

    set_spec()
    conf = net.conf("1.1.0")
    conf["ipam"]["type"] = "fake-ipam"
    env = {"CNI_PATH": f"{bindir}:{CNI_PATH}", "FAKE_IPAM_SPEC": str(spec_file)}
    return conf, calls, set_spec, env


def test_version_negotiated_once_then_remembered(plugin, pod_ns, net, fake):
    conf, calls, _, env = fake
    add = plugin.run("ADD", conf, container_id="ctr-neg", netns=pod_ns.path, **env)
    assert add.status == 0, add.stdout
    assert add.json["cniVersion"] == "1.1.0"  # the result keeps the config's version
    assert calls() == [("ADD", "1.1.0"), ("VERSION", None), ("ADD", "1.0.0")]
    chk = plugin.run("CHECK", with_prev(conf, add.json), container_id="ctr-neg", netns=pod_ns.path, **env)
    assert chk.status == 0, chk.stdout
    assert calls() == [("CHECK", "1.0.0")]  # the answer is remembered: one exec
    assert plugin.run("DEL", conf, container_id="ctr-neg", netns=pod_ns.path, **env).status == 0
    assert calls() == [("DEL", "1.0.0")]
    assert net.leases() == []


def test_gc_and_status_forwarded_to_a_1_1_delegate(plugin, net, fake):
    conf, calls, set_spec, env = fake
    set_spec(versions=["1.0.0", "1.1.0"])
    gc = {**conf, "cni.dev/valid-attachments": []}
    assert plugin.call(plugin.env("GC", **env), gc).status == 0
    assert ("GC", "1.1.0") in calls()
    assert plugin.call(plugin.env("STATUS", **env), conf).status == 0
    assert calls() == [("VERSION", None), ("STATUS", "1.1.0")]  # VERSION runs afresh each time


@pytest.mark.parametrize("code", [50, 51])
def test_status_keeps_the_delegates_readiness_code(plugin, net, fake, code):
    conf, calls, set_spec, env = fake
    set_spec(versions=["1.1.0"], status=code)
    reply = plugin.call(plugin.env("STATUS", **env), conf)
    assert reply.status == 1 and reply.json["code"] == code and "fake-ipam" in reply.json["msg"]


def test_gc_not_forwarded_to_an_older_delegate(plugin, net, fake):
    conf, calls, _, env = fake
    assert plugin.call(plugin.env("GC", **env), {**conf, "cni.dev/valid-attachments": []}).status == 0
    assert "GC" not in [c for c, _ in calls()]


def test_status_of_an_older_delegate_asks_version_every_time(plugin, net, fake, tmp_path):
    conf, calls, _, env = fake
    for _ in range(2):
        assert plugin.call(plugin.env("STATUS", **env), conf).status == 0
        assert calls() == [("VERSION", None)]
    os.chmod(tmp_path / "bin" / "fake-ipam", 0o644)  # present but not runnable: not ready
    reply = plugin.call(plugin.env("STATUS", **env), conf)
    assert reply.status == 1 and reply.json["code"] == Code.NOT_AVAILABLE


def test_check_asks_ipam_check(plugin, pod_ns, net):
    """host-local CHECK fails once its lease file is gone; nsveth's CHECK must say so."""
    conf = net.conf("1.0.0")
    add = plugin.run("ADD", conf, container_id="ctr-ipamchk", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    lease = net.leases()[0]
    os.unlink(os.path.join(net.ipam_dir, net.name, lease))
    chk = plugin.run("CHECK", with_prev(conf, add.json), container_id="ctr-ipamchk", netns=pod_ns.path)
    assert chk.status == 1 and "host-local" in chk.json["msg"], chk.stdout
    assert plugin.run("DEL", conf, container_id="ctr-ipamchk", netns=pod_ns.path).status == 0
