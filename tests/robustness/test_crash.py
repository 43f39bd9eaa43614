"""Crash consistency: ADD killed by SIGKILL at each named step, then DEL or GC restores the host exactly.

The built executable runs with NSVETH_TEST_CRASH_AT=<point> (see
plugin/nsveth/crashpoints.py), so ADD dies at that point with no cleanup of
its own. Then, as a runtime would:
- DEL with the same config (no prevResult: the ADD never answered), or
- GC (cniVersion 1.1.0) with an empty `cni.dev/valid-attachments`,
must return status 0 and leave the host netns, the pod netns (links,
addresses, routes, rules, every /proc/sys/net value, nftables), the IPAM
lease files and the state files exactly as they were before the ADD, with no
process left that the killed plugin started. Afterwards the same attachment
can be added and deleted again at once (nothing, not a lock, is left held).

A point whose feature has not landed (mid-announcement, until the
advertise step calls it) is skipped with a reason while no plugin source
calls it; once wired, the same test covers it. The host netns is a node
(hoststate.make_node): objects that outlive pods by design (the bridge, the
masquerade table, forwarding) exist before the ADD.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

import hoststate
import support
from nsveth import crashpoints

PLUGIN_DIR = os.path.dirname(crashpoints.__file__)
CORE_POINTS = ("after-state", "after-ipam", "after-veth", "after-host", "after-addresses")
BRIDGE = hoststate.NODE_BRIDGE
# What each point has already made, so the crash provably left something to clean up.
LEFTOVERS = {
    "after-state": {"state"},
    "after-ipam": {"state", "lease"},
    "after-veth": {"state", "lease", "veth"},
    "after-host": {"state", "lease", "veth"},
    "after-addresses": {"state", "lease", "veth"},
    "after-sysctls": {"state", "lease", "veth"},
    "mid-announcement": {"state", "lease", "veth"},
}


def wired(point: str) -> bool:
    """Does this build's ADD call the point? (the externally owned ones land with their features)"""
    for path in glob.glob(os.path.join(PLUGIN_DIR, "*.py")):
        if os.path.basename(path) == "crashpoints.py":
            continue
        with open(path) as f:
            if f'"{point}"' in f.read():
                return True
    return False


def node(host: support.Netns) -> None:
    """The host netns as on a node (hoststate.make_node): forwarding on, a bridge, the masquerade table."""
    hoststate.make_node(host.name)


def config(net: support.Network, flavour: str) -> dict:
    conf = net.conf(
        "1.1.0",
        subnets=["10.98.0.0/24", "fd00:98::/64"],
        mtu=1400,
        ipMasq=True,
        sysctl={"net.ipv4.conf.eth0.arp_notify": "1"},
        advertise={"count": 3, "intervalMs": 200},
    )
    if flavour == "bridge":
        conf.update(mode="bridge", bridge=BRIDGE)
    return conf


def state_of(host: support.Netns, pod: support.Netns, net: support.Network) -> dict:
    return {
        "host": hoststate.snapshot(host.name),
        "pod": hoststate.snapshot(pod.name),
        "files": hoststate.files(net.tmp),
    }


def assert_same(before: dict, after: dict) -> None:
    problems = [f"host: {p}" for p in hoststate.diff(before["host"], after["host"])]
    problems += [f"pod: {p}" for p in hoststate.diff(before["pod"], after["pod"])]
    if before["files"] != after["files"]:
        problems.append(f"files: {before['files']} -> {after['files']}")
    assert not problems, "\n".join(problems)


def no_orphans(tag: str) -> None:
    deadline = time.monotonic() + 2.0
    while hoststate.processes_with(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = hoststate.processes_with(tag)
    assert not left, f"processes started by the killed plugin are still running: {left}"


def killed_add(exe: support.Plugin, pod: support.Netns, net: support.Network, conf: dict, cid: str, point: str, tag: str) -> None:
    env = exe.env("ADD", container_id=cid, netns=pod.path, NSVETH_TEST_CRASH_AT=point, NSVETH_TEST_TAG=tag)
    reply = exe.call(env, conf)
    if reply.status == 0 and point not in CORE_POINTS and not wired(point):
        exe.run("DEL", conf, container_id=cid, netns=pod.path)
        pytest.skip(f"crash point {point} is not called by this build's ADD (its feature has not landed)")
    assert reply.status == -9, f"ADD was not killed at {point}: status {reply.status} {reply.stdout!r} {reply.stderr[-2000:]}"
    assert reply.stdout == b"", "a killed ADD printed a result"
    left = set()
    if net.state_files():
        left.add("state")
    if net.leases():
        left.add("lease")
    if support.host_veths(exe.host):
        left.add("veth")
    assert LEFTOVERS[point] <= left, f"the crash at {point} left {sorted(left)}: the point is not where it claims to be"


@pytest.mark.parametrize("flavour", ["ptp", "bridge"])
@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_crash_then_cleanup_restores_host(exe, need_exe, pod_ns, net, point, cleanup, flavour):
    node(exe.host)
    conf = config(net, flavour)
    cid = support.unique("crash-")
    tag = support.unique("nsveth-crash-tag-")
    before = state_of(exe.host, pod_ns, net)

    killed_add(exe, pod_ns, net, conf, cid, point, tag)

    if cleanup == "DEL":
        env = exe.env("DEL", container_id=cid, netns=pod_ns.path, NSVETH_TEST_TAG=tag)
        reply = exe.call(env, conf)
    else:
        gc = {**config(net, flavour), "cni.dev/valid-attachments": []}
        reply = exe.call(exe.env("GC", NSVETH_TEST_TAG=tag), gc)
    assert reply.status == 0, (reply.stdout, reply.stderr[-2000:])
    no_orphans(tag)
    assert net.leases() == [] and net.state_files() == []
    assert support.host_veths(exe.host) == []
    assert_same(before, state_of(exe.host, pod_ns, net))

    # Nothing is left held (locks, names, addresses): the same attachment comes and goes at once.
    t0 = time.monotonic()
    add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    dele = exe.run("DEL", support.with_prev(conf, add.json), container_id=cid, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert time.monotonic() - t0 < 20
    assert_same(before, state_of(exe.host, pod_ns, net))


@pytest.mark.parametrize("point", CORE_POINTS)
def test_crash_then_add_again_then_del(exe, need_exe, pod_ns, net, point):
    """A runtime that retries ADD after the crash (instead of DEL first) still ends clean after its DEL."""
    node(exe.host)
    conf = config(net, "ptp")
    cid = support.unique("retry-")
    tag = support.unique("nsveth-crash-tag-")
    before = state_of(exe.host, pod_ns, net)
    killed_add(exe, pod_ns, net, conf, cid, point, tag)
    add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path)
    # The killed ADD's leftovers (lease, veth, pod interface) are replaced, never an error.
    assert add.status == 0, add.stdout
    assert len(net.leases()) == len(add.json["ips"]) and len(support.host_veths(exe.host)) == 1
    assert {ip["address"] for ip in add.json["ips"]} <= set(pod_ns.addresses("eth0"))
    dele = exe.run("DEL", conf, container_id=cid, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    no_orphans(tag)
    assert net.leases() == [] and net.state_files() == []
    assert_same(before, state_of(exe.host, pod_ns, net))


def test_gc_sweeps_temp_files_of_killed_writers(inproc, net):
    """A state write killed between write and rename leaves <record>.<pid>.tmp: GC (exclusive) removes it."""
    conf = net.conf("1.1.0")
    assert inproc.call(inproc.env("GC"), {**conf, "cni.dev/valid-attachments": []}).status == 0
    directory = os.path.join(net.runtime_dir, net.name)
    leftover = os.path.join(directory, "ctr-x:eth0.json.4242.tmp")
    with open(leftover, "w") as f:
        f.write('{"phase": "add')
    assert inproc.call(inproc.env("GC"), {**conf, "cni.dev/valid-attachments": []}).status == 0
    assert sorted(os.listdir(directory)) == ["lock"]
