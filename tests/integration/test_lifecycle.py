"""ADD, CHECK, GC, STATUS, DEL through the real kernel, for every spec version, in-process, as the
executable and served: what differs between versions (the result's shape, which commands a
version allows) is checked for each."""

from __future__ import annotations

import pytest
from nsveth import versions
from nsveth.errors import Code
from support import host_veths, with_prev


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_add_check_del(plugin, pod_ns, net, version):
    conf = net.conf(version, mtu=1400)
    cid = "ctr-lifecycle"
    add = plugin.run("ADD", conf, container_id=cid, netns=pod_ns.path)
    assert add.status == 0, add.stdout
    res = add.json
    assert res["cniVersion"] == version
    host_if, pod_if = res["interfaces"]
    assert pod_if["name"] == "eth0" and pod_if["sandbox"] == pod_ns.path
    assert "sandbox" not in host_if and host_if["name"].startswith("nsv") and len(host_if["name"]) == 15
    (ip,) = res["ips"]
    assert ip["interface"] == 1 and ip["address"] == "10.77.0.2/24" and ip["gateway"] == "10.77.0.1"
    # Before 1.0.0 each IP names its family; 1.1.0 adds the interface's MTU.
    assert ip.get("version") == (None if versions.at_least(version, "1.0.0") else "4")
    assert pod_if.get("mtu") == (1400 if versions.at_least(version, "1.1.0") else None)

    # Kernel state, read independently of the plugin.
    links = pod_ns.links()
    assert links["eth0"]["mtu"] == 1400 and links["eth0"]["address"] == pod_if["mac"]
    assert links["eth0"]["linkinfo"]["info_kind"] == "veth"
    assert pod_ns.addresses("eth0") == ["10.77.0.2/24"]
    dsts = {(r["dst"], r.get("gateway")) for r in pod_ns.routes()}
    assert ("default", "10.77.0.1") in dsts and ("10.77.0.1", None) in dsts
    assert host_veths(plugin.host) == [host_if["name"]]
    assert [a for a in plugin.host.addresses(host_if["name"]) if ":" not in a] == ["10.77.0.1/32"]
    assert plugin.host.sysctl("net/ipv4/ip_forward") == "1"
    assert pod_ns.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
    assert net.leases() == ["10.77.0.2"]

    # CHECK exists from 0.4.0, GC and STATUS from 1.1.0; older configs get "incompatible version".
    chk = plugin.run("CHECK", with_prev(conf, res), container_id=cid, netns=pod_ns.path)
    gc = plugin.run("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"}]})
    status = plugin.run("STATUS", conf)
    for command, reply, since in (("CHECK", chk, "0.4.0"), ("GC", gc, "1.1.0"), ("STATUS", status, "1.1.0")):
        if versions.at_least(version, since):
            assert reply.status == 0, (command, reply.stdout)
        else:
            assert reply.code == Code.INCOMPATIBLE_VERSION and command in reply.json["msg"], reply.stdout
    # Neither a refusal nor GC of a listed attachment touches it.
    assert host_veths(plugin.host) == [host_if["name"]] and "eth0" in pod_ns.links()
    assert net.leases() == ["10.77.0.2"] and net.state_files() == [f"{cid}:eth0.json"]

    for _ in range(2):  # DEL is idempotent
        dele = plugin.run("DEL", with_prev(conf, res), container_id=cid, netns=pod_ns.path)
        assert dele.status == 0, dele.stdout
        assert host_veths(plugin.host) == [] and "eth0" not in pod_ns.links()
        assert net.leases() == [] and net.state_files() == []
