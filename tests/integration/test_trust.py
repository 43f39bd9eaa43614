"""Trust boundaries (issue 15 part A), against the real kernel, in-process and as the executable.

The conflist is the admin's; args.cni and CNI_ARGS may be a pod author's; the
pod netns belongs to the pod; a CNI_NETNS path may name another netns by the
time DEL, CHECK or GC runs. Each test plays one of them.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from nsveth.errors import Code
from support import host_veths, netns, sh, unique, with_prev

CID = "ctr-trust"
PODS_MAC = "0a:58:0a:4d:00:51"


def assert_refused_up_front(plugin, pod_ns, net) -> None:
    """Nothing made, and IPAM never called (host-local makes its network dir on first use)."""
    assert host_veths(plugin.host) == []
    assert set(pod_ns.links()) == {"lo"}
    assert net.state_files() == []
    assert not os.path.exists(os.path.join(net.ipam_dir, net.name))


def pod_value(ns, key: str) -> str:
    return ns.run("cat", f"/proc/sys/{key}").stdout.strip()


# ------------------------------------------------ a pod author through args
def test_args_never_override_the_configs_sysctl(plugin, pod_ns, net):
    conf = net.conf(sysctl={"net.ipv4.conf.IFNAME.rp_filter": "1"},
                    args={"cni": {"sysctl": {"net/ipv4/conf/eth0/rp_filter": "0"}}})
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    msg = rep.json["msg"]
    assert '"net/ipv4/conf/eth0/rp_filter"' in msg and '"net.ipv4.conf.IFNAME.rp_filter"' in msg and "override" in msg
    assert_refused_up_front(plugin, pod_ns, net)


@pytest.mark.parametrize("key", ["net.ipv4.conf.IFNAME.proxy_arp_pvlan", "net.ipv6.conf.all.disable_ipv6",
                                 "net.core.somaxconn"])
def test_args_key_outside_the_safe_set_is_refused_without_allowlist(plugin, pod_ns, net, key):
    rep = plugin.run("ADD", net.conf(args={"cni": {"sysctl": {key: "1"}}}), container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    assert f'"{key}" from args.cni.sysctl' in rep.json["msg"] and "Kubernetes safe set" in rep.json["msg"]
    assert_refused_up_front(plugin, pod_ns, net)


def test_args_safe_key_is_accepted_without_allowlist(plugin, pod_ns, net):
    conf = net.conf(args={"cni": {"sysctl": {"net.ipv4.ip_local_port_range": "20000 40000"}}})
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, rep.stdout
    assert pod_value(pod_ns, "net/ipv4/ip_local_port_range").split() == ["20000", "40000"]
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


def test_args_allowlisted_key_is_accepted(plugin, pod_ns, net, tmp_path):
    allow = tmp_path / "allow.txt"
    allow.write_text("net.ipv4.conf.*\n")
    conf = net.conf(sysctlAllowlist=str(allow), args={"cni": {"sysctl": {"net.ipv4.conf.IFNAME.rp_filter": "2"}}})
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, rep.stdout
    assert pod_value(pod_ns, "net/ipv4/conf/eth0/rp_filter") == "2"
    assert plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


# ------------------------------------------------------ module autoloading
def _unavailable_congestion_control(ns) -> str:
    have = pod_value(ns, "net/ipv4/tcp_available_congestion_control").split()
    return next(cc for cc in ("dctcp", "vegas", "westwood", "htcp", "illinois") if cc not in have)


@pytest.mark.parametrize("where", ["sysctl", "args"])
def test_congestion_control_that_would_load_a_module_is_refused(plugin, pod_ns, net, tmp_path, where):
    cc = _unavailable_congestion_control(pod_ns)
    body = {"net.ipv4.tcp_congestion_control": cc}
    if where == "sysctl":
        conf = net.conf(sysctl=body)
    else:  # allowlisted, so only the module rule can refuse it
        allow = tmp_path / "allow.txt"
        allow.write_text("net.ipv4.tcp_congestion_control\n")
        conf = net.conf(sysctlAllowlist=str(allow), args={"cni": {"sysctl": body}})
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    assert f'"{cc}"' in rep.json["msg"] and "load a module" in rep.json["msg"]
    assert "tcp_available_congestion_control" in rep.json["msg"]
    assert_refused_up_front(plugin, pod_ns, net)


def test_available_congestion_control_is_applied(inproc, pod_ns, net):
    conf = net.conf(sysctl={"net.ipv4.tcp_congestion_control": "reno"})
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, rep.stdout
    assert pod_value(pod_ns, "net/ipv4/tcp_congestion_control") == "reno"
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


# ---------------------------------------------------------------- MAC
@pytest.mark.parametrize("source", ["args", "CNI_ARGS"])
def test_mac_from_args_needs_the_configs_opt_in(plugin, pod_ns, net, source):
    conf, extra = net.conf(), {}
    if source == "args":
        conf["args"] = {"cni": {"mac": PODS_MAC}}
    else:
        extra["CNI_ARGS"] = f"MAC={PODS_MAC}"
    rep = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path, **extra)
    assert rep.code == Code.INVALID_CONFIG, rep.stdout
    assert "macFromArgs" in rep.json["msg"] and ("args.cni.mac" if source == "args" else "CNI_ARGS MAC=") in rep.json["msg"]
    assert_refused_up_front(plugin, pod_ns, net)


def test_cni_args_mac_under_ignore_unknown_is_ignored(inproc, pod_ns, net):
    conf = net.conf()
    rep = inproc.run("ADD", conf, container_id=CID, netns=pod_ns.path, CNI_ARGS=f"IgnoreUnknown=1;MAC={PODS_MAC}")
    assert rep.status == 0, rep.stdout
    assert pod_ns.links()["eth0"]["address"] != PODS_MAC
    assert inproc.run("DEL", conf, container_id=CID, netns=pod_ns.path).status == 0


def _fdb_has(host, bridge: str, mac: str) -> bool:
    out = json.loads(sh("ip", "netns", "exec", host.name, "bridge", "-j", "fdb", "show", "br", bridge).stdout or "[]")
    return any(e.get("mac") == mac for e in out)


def test_mac_in_use_on_the_bridge_is_refused(plugin, net):
    bridge = unique("brt")[:15]  # not "nsv…": host_veths() lists those
    conf = net.conf(mode="bridge", bridge=bridge, advertise={"count": 1})
    with netns("nsvp-") as victim, netns("nsvp-") as attacker:
        first = plugin.run("ADD", {**conf, "runtimeConfig": {"mac": PODS_MAC}}, container_id="ctr-victim",
                           netns=victim.path)
        assert first.status == 0, first.stdout
        try:
            # The victim's announcement taught the bridge its MAC on the victim's port.
            deadline = time.monotonic() + 3
            while not _fdb_has(plugin.host, bridge, PODS_MAC) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _fdb_has(plugin.host, bridge, PODS_MAC)
            bridge_mac = first.json["interfaces"][0]["mac"]
            leases = net.leases()
            for mac, who in ((PODS_MAC.upper(), "port nsv"), (bridge_mac, f"bridge {bridge} itself")):
                rep = plugin.run("ADD", {**conf, "runtimeConfig": {"mac": mac}}, container_id="ctr-attacker",
                                 netns=attacker.path)
                assert rep.code == Code.INVALID_CONFIG, rep.stdout
                assert "already in use" in rep.json["msg"] and who in rep.json["msg"]
                assert set(attacker.links()) == {"lo"} and len(host_veths(plugin.host)) == 1
                assert net.leases() == leases and net.state_files() == ["ctr-victim:eth0.json"]
        finally:
            assert plugin.run("DEL", conf, container_id="ctr-victim", netns=victim.path).status == 0


# ------------------------------------------------------ a stale CNI_NETNS
def test_del_into_the_host_netns_restores_nothing_there(plugin, pod_ns, net):
    conf = net.conf(sysctl={"net.core.somaxconn": "16384"})
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    plugin.host.run("sh", "-c", "echo 4242 > /proc/sys/net/core/somaxconn")
    # The pod's path now names the host netns (pid reuse): DEL is told so.
    rep = plugin.run("DEL", conf, container_id=CID, netns=plugin.host.path)
    assert rep.status == 0, rep.stdout
    assert pod_value(plugin.host, "net/core/somaxconn") == "4242"
    assert host_veths(plugin.host) == [] and net.leases() == [] and net.state_files() == []


def test_del_without_host_veth_leaves_an_unrelated_interface(plugin, net):
    with netns("nsvo-") as other:
        other.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        rep = plugin.run("DEL", net.conf(), container_id="ctr-nothing-here", netns=other.path)
        assert rep.status == 0, rep.stdout
        assert {"eth0", "peer0"} <= set(other.links())


def test_gc_never_enters_a_netns_recreated_at_the_recorded_path(inproc, net):
    conf = net.conf("1.1.0")
    name = unique("nsvp-")
    path = f"/run/netns/{name}"
    sh("ip", "netns", "add", name)
    try:
        assert inproc.run("ADD", conf, container_id="ctr-gone", netns=path).status == 0
        sh("ip", "netns", "delete", name)  # the pod goes, its veth pair with it
        _wait_for_no_host_veth(inproc.host)  # (the kernel frees a netns asynchronously)
        sh("ip", "netns", "add", name)  # and something else is made at the same path
        sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        rep = inproc.run("GC", {**conf, "cni.dev/valid-attachments": []})
        assert rep.status == 0, rep.stdout
        assert "eth0" in sh("ip", "-n", name, "link", "show").stdout
        assert host_veths(inproc.host) == [] and net.leases() == [] and net.state_files() == []
    finally:
        sh("ip", "netns", "delete", name, check=False)


def _wait_for_no_host_veth(host) -> None:
    deadline = time.monotonic() + 10
    while host_veths(host) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_veths(host) == []


def test_check_against_a_netns_recreated_at_the_path_fails_naming_it(plugin, net):
    """prevResult's sandbox path matches, but the namespace at that path is not the one ADD configured."""
    conf = net.conf()
    name = unique("nsvp-")
    path = f"/run/netns/{name}"
    sh("ip", "netns", "add", name)
    try:
        add = plugin.run("ADD", conf, container_id=CID, netns=path)
        assert add.status == 0, add.stdout
        assert plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=path).status == 0
        sh("ip", "netns", "delete", name)
        _wait_for_no_host_veth(plugin.host)
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
        rep = plugin.run("CHECK", with_prev(conf, add.json), container_id=CID, netns=path)
        assert rep.code == Code.CHECK_FAILED, rep.stdout
        assert f"CNI_NETNS {path} is not the netns ADD configured" in rep.json["msg"]
        assert plugin.run("DEL", conf, container_id=CID, netns=path).status == 0
        assert "eth0" in sh("ip", "-n", name, "link", "show").stdout  # DEL left the stranger alone too
    finally:
        sh("ip", "netns", "delete", name, check=False)
    assert host_veths(plugin.host) == [] and net.leases() == [] and net.state_files() == []


def test_del_still_removes_a_pod_interface_left_in_the_recorded_netns(plugin, pod_ns, net):
    """The legitimate case stays: the pod end outlived its host peer's name (renamed by hand)."""
    conf = net.conf()
    add = plugin.run("ADD", conf, container_id=CID, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    (host_name,) = host_veths(plugin.host)
    plugin.host.run("ip", "link", "set", host_name, "name", "renamed0")
    rep = plugin.run("DEL", conf, container_id=CID, netns=pod_ns.path)
    assert rep.status == 0, rep.stdout
    assert set(pod_ns.links()) == {"lo"} and "renamed0" not in plugin.host.links()
    assert net.leases() == [] and net.state_files() == []


def test_netns_identity_tells_a_recreated_namespace_apart(pod_ns):
    from nsveth import netns as nsmod

    fd = nsmod.open_path(pod_ns.path)
    try:
        ident = nsmod.identity(fd)
        assert isinstance(ident["cookie"], int)  # 6.18 has netns cookies
        assert nsmod.mismatch(fd, ident) is None
        assert "cookie" in nsmod.mismatch(fd, {**ident, "cookie": ident["cookie"] + 1})  # inode reused
        assert "inode" in nsmod.mismatch(fd, {**ident, "ino": ident["ino"] + 1})
        assert "no netns identity" in nsmod.mismatch(fd, None)
        assert "no netns identity" in nsmod.mismatch(fd, {"dev": "4", "ino": 1})
    finally:
        os.close(fd)
