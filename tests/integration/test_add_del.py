"""ADD details and DEL's idempotence: rollback, concurrency, MAC sources, stale leftovers, DEL without a netns."""

from __future__ import annotations

import errno
import json
import os

import pytest
from nsveth import versions
from nsveth.errors import Code
from support import Plugin, host_veths, netns, netns_many, with_prev


def test_rollback_after_mid_add_failure(inproc, pod_ns, net, monkeypatch):
    from nsveth import netlink, ptp

    def broken(att):
        raise netlink.NetlinkError(errno.EPERM, "injected failure")

    monkeypatch.setattr(ptp, "setup_pod", broken)
    reply = inproc.run("ADD", net.conf(), container_id="ctr-rollback", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.KERNEL
    assert "injected failure" in reply.json["msg"]  # the original error, not a rollback error
    assert host_veths(inproc.host) == [] and "eth0" not in pod_ns.links()
    assert net.leases() == [] and net.state_files() == []


def test_rollback_when_ipam_returns_no_gateway(inproc, pod_ns, net):
    conf = net.conf()
    conf["ipam"]["ranges"] = [[{"subnet": "10.77.0.0/24", "gateway": ""}]]
    # host-local defaults the gateway; a 'static' IPAM with no gateway shows the ptp refusal.
    conf["ipam"] = {"type": "static", "addresses": [{"address": "10.77.0.9/24"}]}
    reply = inproc.run("ADD", conf, container_id="ctr-nogw", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.INVALID_CONFIG and "gateway" in reply.json["msg"]
    assert host_veths(inproc.host) == [] and "eth0" not in pod_ns.links()


def test_concurrent_adds_then_dels(net, tmp_path):
    n = 20
    with netns("nsvh-") as host:
        with netns_many(n, "nsvp-") as pods:
            plugin = Plugin(host, "exe")
            conf = net.conf(subnets=["10.60.0.0/16"])
            adds = plugin.run_each("ADD", conf, pods, "ctr-")
            names = {r.json["interfaces"][0]["name"] for r in adds}
            addrs = {r.json["ips"][0]["address"] for r in adds}
            assert len(names) == n and len(addrs) == n
            assert host_veths(host) == sorted(names)
            plugin.run_each("DEL", [with_prev(conf, a.json) for a in adds], pods, "ctr-")
            assert host_veths(host) == [] and net.leases() == [] and net.state_files() == []
            assert all("eth0" not in p.links() for p in pods)


@pytest.mark.parametrize("source", ["CNI_ARGS", "args", "runtimeConfig"])
def test_mac_sources(inproc, pod_ns, net, source):
    mac = "0a:58:0a:4d:00:42"
    # A MAC from args / CNI_ARGS is a pod author's: used only when the config opts in.
    conf, extra = net.conf(macFromArgs=True), {}
    if source == "CNI_ARGS":
        extra["CNI_ARGS"] = f"IgnoreUnknown=1;MAC={mac.upper()}"
    elif source == "args":
        conf["args"] = {"cni": {"mac": mac}}
    else:
        conf["runtimeConfig"] = {"mac": mac}
        conf["args"] = {"cni": {"mac": "0a:58:00:00:00:01"}}  # runtimeConfig wins
    reply = inproc.run("ADD", conf, container_id="ctr-mac", netns=pod_ns.path, **extra)
    assert reply.status == 0, reply.stdout
    assert reply.json["interfaces"][1]["mac"] == mac == pod_ns.links()["eth0"]["address"]
    assert inproc.run("CHECK", with_prev(conf, reply.json), container_id="ctr-mac", netns=pod_ns.path).status == 0
    assert inproc.run("DEL", conf, container_id="ctr-mac", netns=pod_ns.path).status == 0


def test_dual_stack_and_dns_override(plugin, pod_ns, net):
    conf = net.conf(subnets=["10.77.0.0/24", "fd77::/64"], dns={"nameservers": ["10.77.0.53"], "search": ["svc"]})
    reply = plugin.run("ADD", conf, container_id="ctr-ds", netns=pod_ns.path)
    assert reply.status == 0, reply.stdout
    res = reply.json
    assert [ip["address"] for ip in res["ips"]] == ["10.77.0.2/24", "fd77::2/64"]
    assert res["dns"] == {"nameservers": ["10.77.0.53"], "search": ["svc"]}
    assert sorted(pod_ns.addresses("eth0"))[:2] == ["10.77.0.2/24", "fd77::2/64"]
    v6 = pod_ns.ip_json("-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert not any(a.get("tentative") for a in v6 if a["local"] == "fd77::2")  # no DAD wait
    assert pod_ns.run("ping", "-6", "-c1", "-W2", "fd77::1").returncode == 0
    assert plugin.host.sysctl(f"net/ipv6/conf/{res['interfaces'][0]['name']}/accept_ra") == "0"
    assert plugin.run("CHECK", with_prev(conf, res), container_id="ctr-ds", netns=pod_ns.path).status == 0
    assert plugin.run("DEL", conf, container_id="ctr-ds", netns=pod_ns.path).status == 0
    assert net.leases() == []


def test_ipv4_only_pod_has_ipv6_disabled(inproc, pod_ns, net):
    reply = inproc.run("ADD", net.conf(), container_id="ctr-v4", netns=pod_ns.path)
    assert reply.status == 0
    assert pod_ns.sysctl("net/ipv6/conf/eth0/disable_ipv6") == "1"
    assert inproc.run("DEL", net.conf(), container_id="ctr-v4", netns=pod_ns.path).status == 0


def test_stale_host_veth_of_same_attachment_is_replaced(inproc, pod_ns, net):
    from nsveth.attachment import host_ifname

    stale = host_ifname("ctr-stale", "eth0")
    inproc.host.run("ip", "link", "add", stale, "type", "veth", "peer", "name", "stalepeer0")
    reply = inproc.run("ADD", net.conf(), container_id="ctr-stale", netns=pod_ns.path)
    assert reply.status == 0, reply.stdout
    assert host_veths(inproc.host) == [stale] and "stalepeer0" not in inproc.host.links()
    assert inproc.run("DEL", net.conf(), container_id="ctr-stale", netns=pod_ns.path).status == 0


@pytest.mark.parametrize("how", ["netns deleted", "empty CNI_NETNS", "interface gone", "never added"])
def test_del_is_best_effort(plugin, net, how):
    conf = net.conf()
    with netns("nsvp-") as pod:
        if how != "never added":
            add = plugin.run("ADD", conf, container_id="ctr-del", netns=pod.path)
            assert add.status == 0, add.stdout
        if how == "interface gone":
            pod.run("ip", "link", "del", "eth0")
        if how == "netns deleted":
            pod.delete()
        target = "" if how == "empty CNI_NETNS" else pod.path
        for _ in range(2):
            reply = plugin.run("DEL", conf, container_id="ctr-del", netns=target)
            assert reply.status == 0, reply.stdout
        assert host_veths(plugin.host) == [] and net.leases() == [] and net.state_files() == []


def test_check_reports_each_difference(inproc, pod_ns, net):
    conf = net.conf(mtu=1400)
    res = inproc.run("ADD", conf, container_id="ctr-chk", netns=pod_ns.path).json
    pod_ns.run("ip", "link", "set", "eth0", "address", "0a:00:00:00:00:99")
    pod_ns.run("ip", "route", "del", "default")
    reply = inproc.run("CHECK", with_prev(conf, res), container_id="ctr-chk", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.CHECK_FAILED
    msg = reply.json["msg"]
    assert "MAC 0a:00:00:00:00:99" in msg and "route 0.0.0.0/0" in msg
    inproc.run("DEL", conf, container_id="ctr-chk", netns=pod_ns.path)


def test_gc_releases_attachments_not_listed(inproc, net):
    conf = net.conf("1.1.0")
    with netns("nsvp-") as keep, netns("nsvp-") as drop:
        assert inproc.run("ADD", conf, container_id="ctr-keep", netns=keep.path).status == 0
        assert inproc.run("ADD", conf, container_id="ctr-drop", netns=drop.path).status == 0
        drop.delete()  # the runtime lost this pod without a DEL
        gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "ctr-keep", "ifname": "eth0"}]}
        reply = inproc.run("GC", gc)
        assert reply.status == 0, reply.stdout
        assert len(host_veths(inproc.host)) == 1 and net.leases() == ["10.77.0.2"]
        assert net.state_files() == ["ctr-keep:eth0.json"]
        # legacy key name, empty list: everything goes
        reply = inproc.run("GC", {**conf, "cni.dev/attachments": []})
        assert reply.status == 0, reply.stdout
        assert host_veths(inproc.host) == [] and net.leases() == [] and net.state_files() == []


def test_status(inproc, net, tmp_path):
    assert inproc.run("STATUS", net.conf("1.1.0")).status == 0
    reply = inproc.run("STATUS", net.conf("1.1.0", ipam={"type": "no-such-ipam"}))
    assert reply.status == 1 and reply.json["code"] == Code.NOT_AVAILABLE and "no-such-ipam" in reply.json["msg"]


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_result_validates_as_cni_result(plugin, pod_ns, net, version):
    """Each version's result carries only fields of that version's spec, interface indexes in range:
    an IP's "version" only before 1.0.0; interface and route extras (mtu, ...) only from 1.1.0."""
    conf = net.conf(version, subnets=["10.77.0.0/24", "fd77::/64"])
    res = plugin.run("ADD", conf, container_id="ctr-res", netns=pod_ns.path).json
    assert res["cniVersion"] == version
    assert set(res) <= {"cniVersion", "interfaces", "ips", "routes", "dns"}
    modern, extras = versions.at_least(version, "1.0.0"), versions.at_least(version, "1.1.0")
    for ip in res["ips"]:
        assert set(ip) <= {"address", "gateway", "interface"} | (set() if modern else {"version"})
        assert 0 <= ip["interface"] < len(res["interfaces"])
    assert [ip.get("version") for ip in res["ips"]] == ([None, None] if modern else ["4", "6"])
    for iface in res["interfaces"]:
        assert set(iface) <= {"name", "mac", "sandbox"} | ({"mtu", "socketPath", "pciID"} if extras else set())
    assert ("mtu" in res["interfaces"][1]) == extras
    route_extras = {"mtu", "advmss", "priority", "table", "scope"} if extras else set()
    assert all(set(r) <= {"dst", "gw"} | route_extras for r in res.get("routes", []))
    json.dumps(res)
    assert plugin.run("DEL", with_prev(conf, res), container_id="ctr-res", netns=pod_ns.path).status == 0


def test_rollback_when_the_new_veth_cannot_be_brought_up(inproc, pod_ns, net, monkeypatch):
    """The pair is undone even when the failure comes inside veth creation, right after the kernel made it."""
    from nsveth import links, netlink

    def broken(sock, index):
        raise netlink.NetlinkError(errno.EBUSY, "injected set_up failure")

    monkeypatch.setattr(links, "set_up", broken)
    reply = inproc.run("ADD", net.conf(), container_id="ctr-upfail", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.KERNEL and "injected" in reply.json["msg"]
    assert host_veths(inproc.host) == [] and "eth0" not in pod_ns.links()
    assert net.leases() == [] and net.state_files() == []


def test_check_reports_host_side_differences(plugin, pod_ns, net):
    conf = net.conf()
    res = plugin.run("ADD", conf, container_id="ctr-hostchk", netns=pod_ns.path).json
    host_name, pod_ip = res["interfaces"][0]["name"], res["ips"][0]["address"].split("/")[0]
    plugin.host.run("ip", "route", "del", f"{pod_ip}/32", "dev", host_name)
    plugin.host.run("ip", "addr", "flush", "dev", host_name)
    reply = plugin.run("CHECK", with_prev(conf, res), container_id="ctr-hostchk", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.CHECK_FAILED, reply.stdout
    assert f"host route to {pod_ip}" in reply.json["msg"] and "lacks gateway address 10.77.0.1/32" in reply.json["msg"]
    assert plugin.run("DEL", conf, container_id="ctr-hostchk", netns=pod_ns.path).status == 0


def test_del_releases_the_lease_when_link_removal_fails(inproc, pod_ns, net, monkeypatch):
    from nsveth import links, netlink

    conf = net.conf()
    assert inproc.run("ADD", conf, container_id="ctr-linkfail", netns=pod_ns.path).status == 0
    real_delete = links.delete

    def broken(sock, name):
        raise netlink.NetlinkError(errno.EPERM, "injected delete failure")

    monkeypatch.setattr(links, "delete", broken)
    reply = inproc.run("DEL", conf, container_id="ctr-linkfail", netns=pod_ns.path)
    assert reply.status == 1 and reply.json["code"] == Code.KERNEL and "injected" in reply.json["msg"]
    assert net.leases() == []  # released even so
    monkeypatch.setattr(links, "delete", real_delete)
    assert inproc.run("DEL", conf, container_id="ctr-linkfail", netns=pod_ns.path).status == 0
    assert host_veths(inproc.host) == [] and net.state_files() == []


def test_del_ignores_an_unusable_prev_result(plugin, pod_ns, net):
    conf = net.conf()
    add = plugin.run("ADD", conf, container_id="ctr-badprev", netns=pod_ns.path)
    assert add.status == 0
    broken = {**add.json, "ips": [{"address": "10.77.0.2/24", "interface": 99}]}
    reply = plugin.run("DEL", with_prev(conf, broken), container_id="ctr-badprev", netns=pod_ns.path)
    assert reply.status == 0, reply.stdout
    assert host_veths(plugin.host) == [] and net.leases() == [] and net.state_files() == []


def test_del_releases_everything_when_the_runtime_dir_is_unusable(plugin, pod_ns, net):
    conf = net.conf()
    assert plugin.run("ADD", conf, container_id="ctr-baddir", netns=pod_ns.path).status == 0
    os.chmod(net.runtime_dir, 0o777)  # writable by others: nsveth no longer trusts or locks in it
    try:
        reply = plugin.run("DEL", conf, container_id="ctr-baddir", netns=pod_ns.path)
        assert reply.status == 0, reply.stdout
        assert host_veths(plugin.host) == [] and net.leases() == []
        add = plugin.run("ADD", conf, container_id="ctr-baddir2", netns=pod_ns.path)
        assert add.status == 1 and add.json["code"] == Code.IO_FAILURE and net.runtime_dir in add.json["msg"]
        assert host_veths(plugin.host) == [] and net.leases() == []
    finally:
        os.chmod(net.runtime_dir, 0o700)


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_null_attachment_list_means_none_valid(inproc, pod_ns, net, key):
    """libcni sends a Go nil slice as null: no attachment is valid."""
    conf = net.conf("1.1.0")
    assert inproc.run("ADD", conf, container_id="ctr-gcnull", netns=pod_ns.path).status == 0
    reply = inproc.run("GC", {**conf, key: None})
    assert reply.status == 0, reply.stdout
    assert host_veths(inproc.host) == [] and net.leases() == [] and net.state_files() == []


def test_gc_without_attachment_list_is_refused(plugin, pod_ns, net):
    """A GC naming no valid attachments at all (neither key) is a malformed request,
    not "every pod is stale": it fails with code 7 and releases nothing."""
    conf = net.conf("1.1.0")
    try:
        assert plugin.run("ADD", conf, container_id="ctr-gcnokey", netns=pod_ns.path).status == 0
        reply = plugin.run("GC", conf)
        assert reply.status != 0 and reply.json["code"] == Code.INVALID_CONFIG, reply.stdout
        assert "cni.dev/valid-attachments" in reply.json["msg"]
        assert len(host_veths(plugin.host)) == 1 and net.leases() == ["10.77.0.2"]
        assert net.state_files() == ["ctr-gcnokey:eth0.json"]
    finally:
        assert plugin.run("DEL", conf, container_id="ctr-gcnokey", netns=pod_ns.path).status == 0
    assert host_veths(plugin.host) == [] and net.leases() == []


def test_check_names_host_side_problems_in_order(inproc, pod_ns, net):
    """CHECK's host side is the wiring's (Wiring.observe): the veth pair first, then ptp's gateway
    address and route back, after the pod side, in one message."""
    conf = net.conf()
    add = inproc.run("ADD", conf, container_id="ctr-check-host", netns=pod_ns.path)
    assert add.status == 0, add.stdout
    host, pod_ip = add.json["interfaces"][0]["name"], add.json["ips"][0]["address"].split("/")[0]
    gateway = add.json["ips"][0]["gateway"]
    inproc.host.run("ip", "link", "set", host, "down")
    inproc.host.run("ip", "addr", "del", f"{gateway}/32", "dev", host)
    pod_ns.run("ip", "link", "set", "eth0", "mtu", "1400")
    chk = inproc.run("CHECK", with_prev(net.conf(mtu=1500), add.json), container_id="ctr-check-host", netns=pod_ns.path)
    assert chk.status != 0 and chk.json["code"] == Code.CHECK_FAILED
    # The route back went with the link's carrier; the address was removed by hand.
    assert chk.json["msg"] == "; ".join(
        [
            "interface eth0 has MTU 1400, expected 1500",
            f"host veth {host} is down",
            f"host veth {host} lacks gateway address {gateway}/32",
            f"host route to {pod_ip} via {host} is missing",
        ]
    ), chk.json["msg"]
    assert inproc.run("DEL", conf, container_id="ctr-check-host", netns=pod_ns.path).status == 0
