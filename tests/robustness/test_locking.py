"""Locking of shared host state: concurrent ADD/DEL/CHECK/GC of different containers, and killed lock holders.

The per-network lock (<runtimeDir>/<network>/lock, flock) is shared by
ADD/DEL and exclusive for GC. These tests show that it is really taken (a
holder blocks GC / ADD), that a holder killed by SIGKILL never blocks the
next command, and that GC never releases attachments of other containers
that were added while it waited for the lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time

import hoststate
import pytest
import support
from support import Netns, host_veths, netns_many, run_threads, with_prev


def _lock_path(net: support.Network) -> str:
    return os.path.join(net.runtime_dir, net.name, "lock")


def _start(exe: support.Plugin, env: dict, conf: dict) -> subprocess.Popen:
    """The executable started in the background, its config already on stdin."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(conf).encode())
        stdin.seek(0)
        return subprocess.Popen(
            ["ip", "netns", "exec", exe.host.name, support.EXECUTABLE],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )


def test_killed_lock_holder_never_blocks(exe, need_exe, pod_ns, net):
    conf = net.conf()
    # The lock file appears with the first command of the network.
    assert exe.run("DEL", conf, container_id="warmup").status == 0
    holder = support.lock_holder(_lock_path(net), "flock-ex")
    add = _start(exe, exe.env("ADD", container_id="ctr-lock", netns=pod_ns.path), conf)
    try:
        time.sleep(1.5)
        assert add.poll() is None, "ADD did not wait for the network lock"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        out, err = add.communicate(timeout=20)
    finally:
        for p in (holder, add):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert add.returncode == 0, (out, err)
    assert len(host_veths(exe.host)) == 1
    assert exe.run("DEL", conf, container_id="ctr-lock", netns=pod_ns.path).status == 0
    assert host_veths(exe.host) == [] and net.leases() == [] and net.state_files() == []


def test_gc_waits_for_add_and_spares_attachments_added_meanwhile(exe, need_exe, net):
    """GC's valid list predates ADDs that finish while it waits for the lock: those must survive."""
    conf = net.conf("1.1.0")
    namespaces = [Netns("nsvl-") for _ in range(5)]
    gc = None
    try:
        stale, fresh = namespaces[0], namespaces[1:]
        # A stale attachment: its ADD was killed after creating the veth, no DEL ever came.
        env = exe.env("ADD", container_id="stale", netns=stale.path, NSVETH_TEST_CRASH_AT="after-veth")
        assert exe.call(env, conf).status == -9
        assert net.state_files() == ["stale:eth0.json"] and net.leases()

        in_flight = support.lock_holder(_lock_path(net), "flock-sh")  # an ADD of some other container, in progress
        lock_mtime = os.stat(_lock_path(net)).st_mtime_ns
        gc = _start(exe, exe.env("GC"), {**conf, "cni.dev/valid-attachments": []})
        deadline = time.monotonic() + 20
        while os.stat(_lock_path(net)).st_mtime_ns == lock_mtime and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert gc.poll() is None, "GC did not wait for the ADD holding the lock"

        # ADDs of other containers run (shared lock) while GC waits.
        adds = exe.run_each("ADD", conf, fresh, "fresh")
        assert gc.poll() is None

        in_flight.kill()
        in_flight.wait()
        out, err = gc.communicate(timeout=30)
        assert gc.returncode == 0, (out, err)

        # The stale one is gone, the fresh ones are intact and pass CHECK.
        assert sorted(net.state_files()) == [f"fresh{i}:eth0.json" for i in range(4)]
        assert len(net.leases()) == 4 and len(host_veths(exe.host)) == 4
        for i, (ns, a) in enumerate(zip(fresh, adds, strict=True)):
            chk = exe.run("CHECK", with_prev(conf, a.json), container_id=f"fresh{i}", netns=ns.path)
            assert chk.status == 0, chk.stdout
            assert exe.run("DEL", with_prev(conf, a.json), container_id=f"fresh{i}", netns=ns.path).status == 0
        assert host_veths(exe.host) == [] and net.leases() == [] and net.state_files() == []
    finally:
        if gc is not None and gc.poll() is None:
            gc.kill()
            gc.wait()
        for ns in namespaces:
            ns.delete()


def test_concurrent_add_check_del_gc_of_different_containers(inproc, net):
    """8 at a time: ADDs, then CHECKs of half racing DELs of the other half and a GC listing the live ones."""
    conf = net.conf("1.1.0", subnets=["10.97.0.0/24", "fd00:97::/64"])
    with netns_many(12, "nsvc-") as namespaces:
        cids = [f"conc{i}" for i in range(12)]
        # A node: forwarding already on (ADD switches it on once and deliberately leaves it).
        inproc.host.run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        before = hoststate.snapshot(inproc.host.name)
        adds = run_threads([
            (lambda c=c, ns=ns: inproc.run("ADD", conf, container_id=c, netns=ns.path)) for c, ns in zip(cids, namespaces, strict=True)
        ])
        assert all(a.status == 0 for a in adds), [a.stdout for a in adds]
        assert len({tuple(ip["address"] for ip in a.json["ips"]) for a in adds}) == 12  # no address handed out twice
        keep, drop = list(range(6)), list(range(6, 12))
        gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": cids[i], "ifname": "eth0"} for i in keep]}
        jobs = [
            (lambda i=i: inproc.run("CHECK", with_prev(conf, adds[i].json), container_id=cids[i], netns=namespaces[i].path))
            for i in keep
        ] + [
            (lambda i=i: inproc.run("DEL", with_prev(conf, adds[i].json), container_id=cids[i], netns=namespaces[i].path))
            for i in drop
        ] + [lambda: inproc.call(inproc.env("GC"), gc_conf)]
        replies = run_threads(jobs)
        assert all(r.status == 0 for r in replies), [r.stdout for r in replies]
        assert net.state_files() == sorted(f"{cids[i]}:eth0.json" for i in keep)
        assert len(host_veths(inproc.host)) == 6 and len(net.leases()) == 12  # 6 pods x (v4 + v6)
        for i in keep:
            assert inproc.run("DEL", with_prev(conf, adds[i].json), container_id=cids[i], netns=namespaces[i].path).status == 0
        assert net.state_files() == [] and net.leases() == []
        assert hoststate.diff(before, hoststate.snapshot(inproc.host.name)) == []


def test_concurrent_first_adds_race_to_set_up_the_bridge(inproc, net):
    """8 ADDs at once in bridge mode with no bridge yet: all succeed, one bridge, every host veth enslaved to it."""
    bridge = support.unique("nsb")
    conf = net.conf("1.0.0", mode="bridge", bridge=bridge, isGateway=True)
    with netns_many(8, "nsvb-") as namespaces:
        adds = inproc.run_each("ADD", conf, namespaces, "br")
        links = inproc.host.links()
        if bridge not in links:
            for i, (ns, a) in enumerate(zip(namespaces, adds, strict=True)):
                inproc.run("DEL", with_prev(conf, a.json), container_id=f"br{i}", netns=ns.path)
            pytest.skip("bridge mode has not landed in this build (no bridge was created)")
        veths = [n for n in host_veths(inproc.host)]
        assert len(veths) == 8
        assert all(links[v].get("master") == bridge for v in veths), {v: links[v].get("master") for v in veths}
        assert [n for n in links if links[n].get("linkinfo", {}).get("info_kind") == "bridge"] == [bridge]
        for i, (ns, a) in enumerate(zip(namespaces, adds, strict=True)):
            assert inproc.run("DEL", with_prev(conf, a.json), container_id=f"br{i}", netns=ns.path).status == 0
        assert host_veths(inproc.host) == [] and net.leases() == [] and net.state_files() == []
