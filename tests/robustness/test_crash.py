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

Each crash point first proves what it has already made (LEFTOVERS), so the
cleanup provably had something to undo: state record, lease, veth,
masquerade chain, the pod-wide sysctl written, the announcement sender
alive. The sender sends its rounds 2 s apart (the longest interval), so at
the crash it is still sleeping before its second round and DEL/GC must stop
it themselves: right after they return its pid is gone.

The config sets a pod-wide sysctl (hoststate.POD_WIDE_SYSCTL), which, unlike
a per-interface one, survives the pod interface: only DEL puts the original
back. GC does not (the netns path of a stale record is not trusted), so
after a GC that value is left out of the comparison, and the re-ADD + DEL
that follows must return the pod to exactly what GC left.

A point whose feature has not landed (mid-announcement, until the
advertise step calls it) is skipped with a reason while no plugin source
calls it; once wired, the same test covers it. The host netns is a node
(hoststate.make_node): objects that outlive pods by design (the bridge, the
masquerade table, forwarding) exist before the ADD.
"""

from __future__ import annotations

import glob
import json
import os
import time

import hoststate
import pytest
import support
from nsveth import advertise, crashpoints
from nsveth.errors import Code

PLUGIN_DIR = os.path.dirname(crashpoints.__file__)
CORE_POINTS = ("after-state", "after-ipam", "after-veth", "after-host", "after-addresses")
# A runtime that retries ADD without a DEL: the crashed ADD's record still says "adding".
# (After mid-announcement the record says "added": that is a finished ADD, not retried.)
RETRY_POINTS = (*CORE_POINTS, "after-sysctls")
BRIDGE = hoststate.NODE_BRIDGE
# Exactly what each point has already made (so the crash provably left something to clean
# up, and nothing of a later step is there yet): the state record, a lease, the host veth,
# the masquerade chain (configs with ipMasq), the pod-wide sysctl written, the sender alive.
LEFTOVERS = {
    "after-state": {"state"},
    "after-ipam": {"state", "lease"},
    "after-veth": {"state", "lease", "veth"},
    "after-host": {"state", "lease", "veth", "masq"},
    "after-addresses": {"state", "lease", "veth", "masq"},
    "after-sysctls": {"state", "lease", "veth", "masq", "sysctl"},
    "mid-announcement": {"state", "lease", "veth", "masq", "sysctl", "sender"},
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


@pytest.fixture(params=["exe", "served"])
def exe(request, host_ns):
    """The built executable, in-process (server off) and handing each request to the session's warm
    server: the crash points travel with the environment and fire inside the served request."""
    if request.param == "served":
        return support.Plugin(host_ns, "served", request.getfixturevalue("nsveth_server"))
    return support.Plugin(host_ns, "exe")


def node(host: support.Netns) -> None:
    """The host netns as on a node (hoststate.make_node): forwarding on, a bridge, the masquerade table."""
    hoststate.make_node(host.name)


def config(net: support.Network, flavour: str) -> dict:
    conf = net.conf(
        "1.1.0",
        subnets=["10.98.0.0/24", "fd00:98::/64"],
        mtu=1400,
        ipMasq=True,
        sysctl={"net.ipv4.conf.eth0.arp_notify": "1", hoststate.POD_WIDE_SYSCTL: hoststate.POD_WIDE_VALUE},
        # Rounds 2 s apart (the most allowed): at the crash the sender sleeps ~2 s before its next round.
        advertise={"count": 3, "intervalMs": 2000},
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


def assert_same(before: dict, after: dict, except_pod_sysctls: tuple[str, ...] = ()) -> None:
    """Host, pod and files unchanged; `except_pod_sysctls` (/proc paths) left out of the pod's comparison."""

    def pod(snapshot: dict) -> dict:
        sysctls = {k: v for k, v in snapshot["sysctls"].items() if k not in except_pod_sysctls}
        return {**snapshot, "sysctls": sysctls}

    problems = [f"host: {p}" for p in hoststate.diff(before["host"], after["host"])]
    problems += [f"pod: {p}" for p in hoststate.diff(pod(before["pod"]), pod(after["pod"]))]
    if before["files"] != after["files"]:
        problems.append(f"files: {before['files']} -> {after['files']}")
    assert not problems, "\n".join(problems)


def no_orphans(tag: str) -> None:
    deadline = time.monotonic() + 2.0
    while hoststate.processes_with(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = hoststate.processes_with(tag)
    assert not left, f"processes started by the killed plugin are still running: {left}"


def recorded_sender(net: support.Network) -> tuple[int, int] | None:
    """(pid, start time) of the announcement sender named in the (only) state record of the network, if any."""
    senders = []
    for name in net.state_files():
        with open(os.path.join(net.runtime_dir, net.name, name)) as f:
            sender = json.load(f).get("advertiser")
        if isinstance(sender, dict) and isinstance(sender.get("pid"), int):
            senders.append((sender["pid"], sender["start"]))
    assert len(senders) <= 1, senders
    return senders[0] if senders else None


def sender_alive(sender: tuple[int, int] | None, tag: str) -> bool:
    """The recorded sender still runs: the tag in its environment (a fork of a served request has
    the server's environment; its pid and start time then name it), not a recycled pid, not a zombie."""
    if sender is None:
        return False
    pid, start = sender
    return pid in hoststate.processes_with(tag) or advertise.start_time(pid) == start


def killed_add(
    exe: support.Plugin, pod: support.Netns, net: support.Network, conf: dict, cid: str, point: str, tag: str
) -> tuple[int, int] | None:
    """ADD killed at `point`, which provably left exactly LEFTOVERS[point]; the recorded sender's pid."""
    env = exe.env("ADD", container_id=cid, netns=pod.path, NSVETH_TEST_CRASH_AT=point, NSVETH_TEST_TAG=tag)
    reply = exe.call(env, conf)
    if reply.status == 0 and point not in CORE_POINTS and not wired(point):
        exe.run("DEL", conf, container_id=cid, netns=pod.path)
        pytest.skip(f"crash point {point} is not called by this build's ADD (its feature has not landed)")
    if exe.mode == "served":
        # The request's process died before reporting: the client says "try again later" (code 11).
        assert reply.status == 1 and reply.code == Code.TRY_AGAIN and "killed by signal 9" in reply.json["msg"], (
            reply.stdout,
            reply.stderr[-2000:],
        )
    else:
        assert reply.status == -9, f"ADD was not killed at {point}: status {reply.status} {reply.stdout!r} {reply.stderr[-2000:]}"
        assert reply.stdout == b"", "a killed ADD printed a result"
    sender = recorded_sender(net)
    found = {
        "state": bool(net.state_files()),
        "lease": bool(net.leases()),
        "veth": bool(support.host_veths(exe.host)),
        "masq": bool(hoststate.masquerade(exe.host.name, net.name)),
        "sysctl": hoststate.pod_wide_sysctl(pod.name) == hoststate.POD_WIDE_VALUE,
        "sender": sender_alive(sender, tag),
    }
    left = {what for what, there in found.items() if there}
    expected = LEFTOVERS[point] - (set() if conf.get("ipMasq") else {"masq"})
    if exe.mode == "served":
        # A served ADD's process sends the later rounds itself once it has answered
        # (advertise.keep_rest_here): killed before that, its sender dies with it.
        expected -= {"sender"}
    assert left == expected, f"the crash at {point} left {sorted(left)}, not {sorted(expected)}: the point is not where it claims to be"
    return sender


@pytest.mark.parametrize("flavour", ["ptp", "bridge"])
@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
@pytest.mark.parametrize("point", crashpoints.POINTS)
def test_crash_then_cleanup_restores_host(exe, need_exe, pod_ns, net, point, cleanup, flavour):
    node(exe.host)
    conf = config(net, flavour)
    cid = support.unique("crash-")
    tag = support.unique("nsveth-crash-tag-")
    before = state_of(exe.host, pod_ns, net)
    original = hoststate.pod_wide_sysctl(pod_ns.name)
    assert original != hoststate.POD_WIDE_VALUE

    sender = killed_add(exe, pod_ns, net, conf, cid, point, tag)

    if cleanup == "DEL":
        env = exe.env("DEL", container_id=cid, netns=pod_ns.path, NSVETH_TEST_TAG=tag)
        reply = exe.call(env, conf)
    else:
        gc = {**config(net, flavour), "cni.dev/valid-attachments": []}
        reply = exe.call(exe.env("GC", NSVETH_TEST_TAG=tag), gc)
    assert reply.status == 0, (reply.stdout, reply.stderr[-2000:])
    # At once, not after a grace period: the sender would still be sleeping before its next round.
    assert not sender_alive(sender, tag), f"{cleanup} returned with the announcement sender (pid {sender}) still running"
    no_orphans(tag)
    assert net.leases() == [] and net.state_files() == []
    assert support.host_veths(exe.host) == []
    assert hoststate.masquerade(exe.host.name, net.name) == []
    cleaned = state_of(exe.host, pod_ns, net)
    if cleanup == "DEL":
        assert hoststate.pod_wide_sysctl(pod_ns.name) == original, f"DEL did not restore {hoststate.POD_WIDE_SYSCTL}"
        assert_same(before, cleaned)
    else:  # GC does not restore sysctls (it does not trust a stale record's netns path)
        assert_same(before, cleaned, except_pod_sysctls=(hoststate.POD_WIDE_PATH,))

    # Nothing is left held (locks, names, addresses): the same attachment comes and goes at once.
    t0 = time.monotonic()
    add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path, NSVETH_TEST_TAG=tag)
    assert add.status == 0, add.stdout
    assert hoststate.pod_wide_sysctl(pod_ns.name) == hoststate.POD_WIDE_VALUE
    dele = exe.run("DEL", support.with_prev(conf, add.json), container_id=cid, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert time.monotonic() - t0 < 20
    no_orphans(tag)
    assert_same(cleaned, state_of(exe.host, pod_ns, net))


@pytest.mark.parametrize("point", RETRY_POINTS)
def test_crash_then_add_again_then_del(exe, need_exe, pod_ns, net, point):
    """A runtime that retries ADD after the crash (instead of DEL first) still ends clean after its DEL."""
    node(exe.host)
    conf = config(net, "ptp")
    cid = support.unique("retry-")
    tag = support.unique("nsveth-crash-tag-")
    before = state_of(exe.host, pod_ns, net)
    original = hoststate.pod_wide_sysctl(pod_ns.name)
    killed_add(exe, pod_ns, net, conf, cid, point, tag)
    add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path, NSVETH_TEST_TAG=tag)
    # The killed ADD's leftovers (lease, veth, pod interface, rules) are replaced, never an error.
    assert add.status == 0, add.stdout
    assert len(net.leases()) == len(add.json["ips"]) and len(support.host_veths(exe.host)) == 1
    assert {ip["address"] for ip in add.json["ips"]} <= set(pod_ns.addresses("eth0"))
    assert hoststate.masquerade(exe.host.name, net.name)
    assert hoststate.pod_wide_sysctl(pod_ns.name) == hoststate.POD_WIDE_VALUE
    dele = exe.run("DEL", conf, container_id=cid, netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    no_orphans(tag)
    # The value from before the killed ADD, not the one it had written when the retry found it.
    assert hoststate.pod_wide_sysctl(pod_ns.name) == original, f"DEL after the retried ADD did not restore {hoststate.POD_WIDE_SYSCTL}"
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
