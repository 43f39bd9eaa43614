"""Bridge mode through the real kernel: pods on one bridge, races on a fresh bridge, CHECK, failures that leave nothing."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import re
import time

import pytest
from nsveth.attachment import host_ifname
from nsveth.errors import Code
from support import Netns, host_veths, netns, netns_many, sh, unique, with_prev


def bridge_conf(net, br, **fields):
    return net.conf(mode="bridge", bridge=br, **fields)


def details(host: Netns, name: str) -> dict:
    return host.links()[name]


def add(plugin, conf, cid, pod):
    reply = plugin.run("ADD", conf, container_id=cid, netns=pod.path)
    assert reply.status == 0, reply.stdout
    return reply.json


def test_two_pods_ping_each_other_and_the_gateway(plugin, net):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True, mtu=1400)
    with netns("nsvp-") as a, netns("nsvp-") as b:
        ra = add(plugin, conf, "ctr-a", a)
        rb = add(plugin, conf, "ctr-b", b)

        # Result: [bridge, host veth, pod], ips point at the pod interface.
        bridge_if, host_if, pod_if = ra["interfaces"]
        assert bridge_if["name"] == br and "sandbox" not in bridge_if
        assert host_if["name"].startswith("nsv") and "sandbox" not in host_if
        assert pod_if == {**pod_if, "name": "eth0", "sandbox": a.path}
        assert [ip["interface"] for ip in ra["ips"]] == [2]
        assert ra["ips"][0]["address"] == "10.77.0.2/24" and ra["ips"][0]["gateway"] == "10.77.0.1"
        assert rb["interfaces"][0] == bridge_if  # same bridge, same (pinned) MAC

        # Kernel state, read independently.
        host = plugin.host
        bridge = details(host, br)
        assert bridge["linkinfo"]["info_kind"] == "bridge" and bridge["address"] == bridge_if["mac"]
        assert bridge["linkinfo"]["info_data"]["stp_state"] == 0
        for res in (ra, rb):
            port = details(host, res["interfaces"][1]["name"])
            assert port["master"] == br and port["linkinfo"]["info_slave_kind"] == "bridge"
            assert port["linkinfo"]["info_slave_data"]["state"] == "forwarding"
            assert port["mtu"] == 1400
        assert [x for x in host.addresses(br) if ":" not in x] == ["10.77.0.1/24"]
        assert host.sysctl("net/ipv4/ip_forward") == "1"
        assert a.addresses("eth0") == ["10.77.0.2/24"]
        routes = {(r["dst"], r.get("gateway")) for r in a.routes()}
        assert ("default", "10.77.0.1") in routes and ("10.77.0.0/24", None) in routes

        assert a.run("ping", "-c1", "-W2", "10.77.0.3").returncode == 0
        assert b.run("ping", "-c1", "-W2", "10.77.0.2").returncode == 0
        assert a.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0

        chk = plugin.run("CHECK", with_prev(conf, ra), container_id="ctr-a", netns=a.path)
        assert chk.status == 0, chk.stdout

        for cid, pod, res in (("ctr-a", a, ra), ("ctr-b", b, rb)):
            for _ in range(2):  # idempotent
                dele = plugin.run("DEL", with_prev(conf, res), container_id=cid, netns=pod.path)
                assert dele.status == 0, dele.stdout
            assert "eth0" not in pod.links()
        # The bridge stays (other pods may use it), its MAC pinned; everything per-pod is gone.
        assert br in host.links() and host_veths(host) == [br]
        assert details(host, br)["address"] == bridge_if["mac"]
        assert net.leases() == [] and net.state_files() == []


def test_concurrent_adds_on_a_fresh_bridge(inproc, net):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True)
    with netns_many(20, "nsvp-") as pods:
        replies = inproc.run_each("ADD", conf, pods, "race-")
        addrs = {r.json["ips"][0]["address"] for r in replies}
        assert len(addrs) == 20
        host = inproc.host
        ports = [n for n, link in host.links().items() if link.get("master") == br]
        assert len(ports) == 20
        assert [x for x in host.addresses(br) if ":" not in x] == ["10.77.0.1/24"]
        assert len({r.json["interfaces"][0]["mac"] for r in replies}) == 1
        for p in pods[:3]:
            assert p.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
        inproc.run_each("DEL", conf, pods, "race-")
        assert [n for n, link in host.links().items() if link.get("master") == br] == []
        assert net.leases() == []


def test_concurrent_adds_as_executables(exe, net):
    """Separate processes racing on the bridge and its gateway address (the lock file, not threads)."""
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True)
    with netns_many(20, "nsvp-") as pods:
        exe.run_each("ADD", conf, pods, "prace-")
        assert [x for x in exe.host.addresses(br) if ":" not in x] == ["10.77.0.1/24"]
        for i, p in enumerate(pods):
            assert exe.run("DEL", conf, container_id=f"prace-{i}", netns=p.path).status == 0


_LOCKED_FILE = re.compile(r"[0-9a-f]+:[0-9a-f]+:(\d+)")  # /proc/locks: major:minor:inode


def _blocked_flocks(path: str) -> int:
    """How many flock requests on the file at `path` are waiting (the "->" lines of /proc/locks)."""
    inode = os.stat(path).st_ino
    count = 0
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields and "FLOCK" in fields:
                ids = [m for m in map(_LOCKED_FILE.fullmatch, fields) if m]
                count += any(int(m.group(1)) == inode for m in ids)
    return count


def test_bridge_setup_waits_for_the_bridge_lock(plugin, net, pod_ns):
    """While someone holds <runtimeDir>/.bridges/<bridge>.lock (flock, exclusive), an ADD creates no bridge.

    In exe mode the ADD is another process; in-process, flock still conflicts (another open file).
    """
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True)
    host = plugin.host
    lock_dir = os.path.join(net.runtime_dir, ".bridges")
    os.makedirs(lock_dir, mode=0o700)
    lock_path = os.path.join(lock_dir, f"{br}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pending = pool.submit(plugin.run, "ADD", conf, container_id="ctr-lock", netns=pod_ns.path)
        # Until the ADD is seen waiting on our lock (or, where /proc/locks does not show it, 5 s), then a bit more.
        deadline = time.monotonic() + 5
        while not pending.done() and not _blocked_flocks(lock_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        assert not pending.done(), pending.result().stdout
        links = host.links()
        assert br not in links
        veth = host_ifname("ctr-lock", "eth0")
        assert host_veths(host) == [veth] and "master" not in links[veth]  # the ADD got as far as the bridge

        fcntl.flock(fd, fcntl.LOCK_UN)
        reply = pending.result(timeout=60)
        assert reply.status == 0, reply.stdout
        assert reply.json["interfaces"][0]["name"] == br
        assert details(host, veth)["master"] == br
        assert [x for x in host.addresses(br) if ":" not in x] == ["10.77.0.1/24"]
        assert pod_ns.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
    finally:
        os.close(fd)  # releases the lock if an assertion failed while we held it
        pool.shutdown(wait=True)
        dele = plugin.run("DEL", conf, container_id="ctr-lock", netns=pod_ns.path)
    assert dele.status == 0, dele.stdout
    assert host_veths(host) == [br] and net.leases() == [] and net.state_files() == []


def test_bad_netns_creates_nothing(plugin, net, tmp_path):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True, ipMasq=True)
    for bad in ("/run/netns/does-not-exist-" + unique(""), str(tmp_path)):
        reply = plugin.run("ADD", conf, container_id="ctr-bad", netns=bad)
        assert reply.status != 0 and reply.code in (Code.UNKNOWN_CONTAINER, Code.INVALID_ENV), reply.stdout
    assert br not in plugin.host.links()
    assert host_veths(plugin.host) == []
    assert net.leases() == [] and net.state_files() == []
    assert plugin.host.run("nft", "list", "ruleset").stdout.strip() == ""


def test_invalid_config_creates_nothing(inproc, net, pod_ns):
    br = unique("nsvb")
    cases = [
        (bridge_conf(net, br, hairpinMode=True, promiscMode=True), 7, ("hairpinMode", "promiscMode")),
        (bridge_conf(net, br, vlan=4095), 7, ("vlan",)),
        (net.conf(isGateway=True, bridge=br), 2, ("isGateway", "bridge")),
        (bridge_conf(net, br, vlan=5, isGateway=True), 7, ("vlan", "isGateway")),
    ]
    for conf, code, names in cases:
        reply = inproc.run("ADD", conf, container_id="ctr-inval", netns=pod_ns.path)
        assert reply.code == code, reply.stdout
        assert all(n in reply.json["msg"] for n in names), reply.json
    assert br not in inproc.host.links() and host_veths(inproc.host) == []
    assert net.leases() == [] and "eth0" not in pod_ns.links()


def test_existing_non_bridge_link_is_an_error(inproc, net, pod_ns):
    name = unique("nsvx")
    inproc.host.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    conf = bridge_conf(net, name, isGateway=True)
    reply = inproc.run("ADD", conf, container_id="ctr-nb", netns=pod_ns.path)
    assert reply.code == Code.INVALID_CONFIG and "not a bridge" in reply.json["msg"], reply.stdout
    # The failed ADD rolled back: no host veth of ours, no lease, no pod interface.
    assert [n for n in host_veths(inproc.host) if n not in (name, name + "p")] == []
    assert net.leases() == [] and net.state_files() == [] and "eth0" not in pod_ns.links()


def test_existing_bridge_that_is_down_is_used_and_brought_up(inproc, net, pod_ns):
    br = unique("nsvb")
    inproc.host.run("ip", "link", "add", br, "type", "bridge")
    assert "UP" not in details(inproc.host, br)["flags"]
    res = add(inproc, bridge_conf(net, br, isGateway=True), "ctr-down", pod_ns)
    assert "UP" in details(inproc.host, br)["flags"]
    assert pod_ns.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
    assert inproc.run("DEL", with_prev(bridge_conf(net, br, isGateway=True), res), container_id="ctr-down", netns=pod_ns.path).status == 0


def test_existing_bridge_with_a_different_address(inproc, net, pod_ns):
    br = unique("nsvb")
    host = inproc.host
    host.run("ip", "link", "add", br, "type", "bridge")
    host.run("ip", "addr", "add", "10.77.0.254/24", "dev", br)
    host.run("ip", "addr", "add", "10.99.0.1/24", "dev", br)  # another subnet: untouched
    conf = bridge_conf(net, br, isGateway=True)
    reply = inproc.run("ADD", conf, container_id="ctr-fa", netns=pod_ns.path)
    assert reply.code == Code.INVALID_CONFIG and "10.77.0.254/24" in reply.json["msg"] and "forceAddress" in reply.json["msg"]
    assert net.leases() == [] and host_veths(host) == [br]

    forced = bridge_conf(net, br, isGateway=True, forceAddress=True)
    res = add(inproc, forced, "ctr-fa", pod_ns)
    assert sorted(x for x in host.addresses(br) if ":" not in x) == ["10.77.0.1/24", "10.99.0.1/24"]
    assert pod_ns.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
    assert inproc.run("DEL", with_prev(forced, res), container_id="ctr-fa", netns=pod_ns.path).status == 0


def test_check_catches_host_veth_removed_from_bridge(plugin, net, pod_ns):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True)
    res = add(plugin, conf, "ctr-chk", pod_ns)
    prev = with_prev(conf, res)
    assert plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path).status == 0
    host_veth = res["interfaces"][1]["name"]
    plugin.host.run("ip", "link", "set", host_veth, "nomaster")
    chk = plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path)
    assert chk.status != 0 and f"{host_veth} is not a port of bridge {br}" in chk.json["msg"], chk.stdout
    plugin.host.run("ip", "link", "set", host_veth, "master", br)
    assert plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path).status == 0

    plugin.host.run("ip", "link", "set", br, "promisc", "on")
    chk = plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path)
    assert chk.status != 0 and "promiscuous" in chk.json["msg"], chk.stdout
    plugin.host.run("ip", "link", "set", br, "promisc", "off")

    plugin.host.run("ip", "link", "set", host_veth, "type", "bridge_slave", "hairpin", "on")
    chk = plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path)
    assert chk.status != 0 and "hairpin" in chk.json["msg"], chk.stdout
    plugin.host.run("ip", "link", "set", host_veth, "type", "bridge_slave", "hairpin", "off")

    plugin.host.run("ip", "addr", "del", "10.77.0.1/24", "dev", br)
    chk = plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path)
    assert chk.status != 0 and "gateway address 10.77.0.1/24" in chk.json["msg"], chk.stdout

    plugin.host.run("ip", "link", "del", br)
    chk = plugin.run("CHECK", prev, container_id="ctr-chk", netns=pod_ns.path)
    assert chk.status != 0 and f"bridge {br} is missing" in chk.json["msg"], chk.stdout
    assert plugin.run("DEL", prev, container_id="ctr-chk", netns=pod_ns.path).status == 0


def test_check_names_the_veth_then_the_bridge(inproc, net, pod_ns):
    """The host side of CHECK is bridge.observe: the veth pair's problems (the bridge is not taken for the
    host veth prevResult lists), then the bridge's, in one message."""
    br = unique("nsvb")
    conf = bridge_conf(net, br)
    res = add(inproc, conf, "ctr-chk-order", pod_ns)
    prev = with_prev(conf, res)
    host_veth = res["interfaces"][1]["name"]
    inproc.host.run("ip", "link", "set", host_veth, "nomaster")
    inproc.host.run("ip", "link", "set", host_veth, "down")
    chk = inproc.run("CHECK", prev, container_id="ctr-chk-order", netns=pod_ns.path)
    assert chk.status != 0, chk.stdout
    assert chk.json["msg"] == f"host veth {host_veth} is down; host veth {host_veth} is not a port of bridge {br}", chk.stdout
    assert inproc.run("DEL", prev, container_id="ctr-chk-order", netns=pod_ns.path).status == 0
    inproc.host.run("ip", "link", "del", br)


def test_hairpin_and_promisc(inproc, net, pod_ns):
    br = unique("nsvb")
    hp = bridge_conf(net, br, hairpinMode=True)
    res = add(inproc, hp, "ctr-hp", pod_ns)
    port = details(inproc.host, res["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert "PROMISC" not in details(inproc.host, br)["flags"]
    assert inproc.run("CHECK", with_prev(hp, res), container_id="ctr-hp", netns=pod_ns.path).status == 0
    assert inproc.run("DEL", hp, container_id="ctr-hp", netns=pod_ns.path).status == 0

    pm = bridge_conf(net, br, promiscMode=True)
    res = add(inproc, pm, "ctr-pm", pod_ns)
    assert "PROMISC" in details(inproc.host, br)["flags"]
    port = details(inproc.host, res["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is False
    assert inproc.run("CHECK", with_prev(pm, res), container_id="ctr-pm", netns=pod_ns.path).status == 0
    assert inproc.run("DEL", pm, container_id="ctr-pm", netns=pod_ns.path).status == 0


def _kernel_has_vlan_filtering() -> bool:
    with netns("nsvt-") as ns:
        return ns.run("ip", "link", "add", unique("nsvb"), "type", "bridge", "vlan_filtering", "1", check=False).returncode == 0


@pytest.fixture(scope="module")
def vlan_filtering():
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root")
    return _kernel_has_vlan_filtering()


def test_vlan_without_kernel_support_is_a_clear_error(inproc, net, pod_ns, vlan_filtering):
    if vlan_filtering:
        pytest.skip("this kernel has bridge VLAN filtering")
    br = unique("nsvb")
    reply = inproc.run("ADD", bridge_conf(net, br, vlan=10), container_id="ctr-novlan", netns=pod_ns.path)
    assert reply.code == Code.KERNEL and "CONFIG_BRIDGE_VLAN_FILTERING" in reply.json["msg"], reply.stdout
    assert br not in inproc.host.links() and net.leases() == [] and "eth0" not in pod_ns.links()


def test_vlan_isolates_pods(inproc, net, vlan_filtering):
    if not vlan_filtering:
        pytest.skip("kernel built without CONFIG_BRIDGE_VLAN_FILTERING")
    br = unique("nsvb")
    host = inproc.host
    with netns("nsvp-") as a, netns("nsvp-") as b, netns("nsvp-") as c:
        ra = add(inproc, bridge_conf(net, br, vlan=10), "ctr-v10a", a)
        rb = add(inproc, bridge_conf(net, br, vlan=10), "ctr-v10b", b)
        rc = add(inproc, bridge_conf(net, br, vlan=20), "ctr-v20", c)
        assert details(host, br)["linkinfo"]["info_data"]["vlan_filtering"] == 1
        out = sh("bridge", "-n", host.name, "-j", "vlan", "show").stdout
        table = {e["ifname"]: e["vlans"] for e in json.loads(out)}
        port_a = ra["interfaces"][1]["name"]
        assert table[port_a] == [{"vlan": 10, "flags": ["PVID", "Egress Untagged"]}]
        assert table[rc["interfaces"][1]["name"]] == [{"vlan": 20, "flags": ["PVID", "Egress Untagged"]}]
        ip_b = rb["ips"][0]["address"].split("/")[0]
        ip_c = rc["ips"][0]["address"].split("/")[0]
        assert a.run("ping", "-c1", "-W2", ip_b).returncode == 0
        assert a.run("ping", "-c1", "-W1", ip_c, check=False).returncode != 0
        for cid, pod in (("ctr-v10a", a), ("ctr-v10b", b), ("ctr-v20", c)):
            assert inproc.run("DEL", bridge_conf(net, br), container_id=cid, netns=pod.path).status == 0


def test_default_gateway_and_dual_stack(plugin, net, pod_ns):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isDefaultGateway=True)
    conf["ipam"] = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd00:78::/64"}]],
        "dataDir": net.ipam_dir,
    }
    res = add(plugin, conf, "ctr-dgw", pod_ns)
    assert {(r["dst"], r.get("gw")) for r in res["routes"]} == {("0.0.0.0/0", "10.78.0.1"), ("::/0", "fd00:78::1")}
    host = plugin.host
    assert sorted(a for a in host.addresses(br) if not a.startswith("fe80")) == ["10.78.0.1/24", "fd00:78::1/64"]
    v4 = {(r["dst"], r.get("gateway")) for r in pod_ns.routes("-4")}
    v6 = {(r["dst"], r.get("gateway")) for r in pod_ns.routes("-6")}
    assert ("default", "10.78.0.1") in v4 and ("default", "fd00:78::1") in v6
    assert pod_ns.run("ping", "-c1", "-W2", "10.78.0.1").returncode == 0
    assert pod_ns.run("ping", "-6", "-c1", "-W2", "fd00:78::1").returncode == 0
    assert plugin.run("CHECK", with_prev(conf, res), container_id="ctr-dgw", netns=pod_ns.path).status == 0
    assert plugin.run("DEL", with_prev(conf, res), container_id="ctr-dgw", netns=pod_ns.path).status == 0
    assert net.leases() == []


def test_gc_removes_host_links_of_stale_attachments(inproc, net):
    br = unique("nsvb")
    conf = bridge_conf(net, br, isGateway=True, cniVersion="1.1.0")
    with netns("nsvp-") as a, netns("nsvp-") as b:
        ra = add(inproc, conf, "ctr-keep", a)
        rb = add(inproc, conf, "ctr-stale", b)
        # GC leaves a record stamped in its own file-system clock tick (a few ms, coarse) for the next
        # GC, as possibly added while it waited for the lock: a stale one is older than that.
        time.sleep(0.05)
        gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "ctr-keep", "ifname": "eth0"}]}
        reply = inproc.run("GC", gc_conf)
        assert reply.status == 0, reply.stdout
        names = inproc.host.links()
        assert ra["interfaces"][1]["name"] in names and rb["interfaces"][1]["name"] not in names
        assert br in names and net.leases() == ["10.77.0.2"]
        assert inproc.run("DEL", conf, container_id="ctr-keep", netns=a.path).status == 0


@pytest.mark.parametrize("with_masq", [False, True])
def test_ptp_mode_unchanged(inproc, net, pod_ns, with_masq):
    """The default mode still gives [host veth, pod] and interface index 1."""
    conf = net.conf(ipMasq=with_masq)
    res = add(inproc, conf, "ctr-ptp", pod_ns)
    assert len(res["interfaces"]) == 2 and res["ips"][0]["interface"] == 1
    assert inproc.run("CHECK", with_prev(conf, res), container_id="ctr-ptp", netns=pod_ns.path).status == 0
    assert inproc.run("DEL", conf, container_id="ctr-ptp", netns=pod_ns.path).status == 0


def test_bridge_conflist_example_end_to_end(exe, net):
    """conf-examples/bridge.conflist as libcni would run it: two pods, v4+v6, masquerade, CHECK, DEL, GC."""
    conf = net.from_example("bridge.conflist")
    br = conf["bridge"]
    host = exe.host
    with netns("nsvp-") as a, netns("nsvp-") as b:
        ra = add(exe, conf, "ctr-ex-a", a)
        rb = add(exe, conf, "ctr-ex-b", b)
        assert [i["name"] for i in ra["interfaces"]] == [br, ra["interfaces"][1]["name"], "eth0"]
        assert {r["dst"] for r in ra["routes"]} == {"0.0.0.0/0", "::/0"}
        assert sorted(x for x in host.addresses(br) if not x.startswith("fe80")) == ["10.201.2.1/24", "fd00:201:2::1/64"]
        port = details(host, ra["interfaces"][1]["name"])
        assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
        b4, b6 = (ip["address"].split("/")[0] for ip in rb["ips"])
        assert a.run("ping", "-c1", "-W2", b4).returncode == 0
        assert a.run("ping", "-6", "-c1", "-W2", b6).returncode == 0
        assert a.run("ping", "-c1", "-W2", "10.201.2.1").returncode == 0
        rules = host.run("nft", "list", "table", "inet", "nsveth").stdout
        for res in (ra, rb):
            for ip in res["ips"]:
                assert f"saddr {ip['address'].split('/')[0]} " in rules
        assert exe.run("CHECK", with_prev(conf, ra), container_id="ctr-ex-a", netns=a.path).status == 0
        assert exe.run("DEL", with_prev(conf, ra), container_id="ctr-ex-a", netns=a.path).status == 0
        # GC needs a 1.1.0 config (a newer runtime than Debian 12's sends the example so).
        gc = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
        assert exe.run("GC", gc).status == 0  # releases ctr-ex-b: its port, rules, lease
        assert host.run("nft", "list", "table", "inet", "nsveth").stdout.count("masquerade") == 0
        assert [n for n, link in host.links().items() if link.get("master") == br] == []
        assert net.leases() == [] and net.state_files() == []
        assert br in host.links()
