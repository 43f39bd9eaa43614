"""Bridge mode's pure parts: config conflicts, completing the lease, the port (no root)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json

import pytest
from nsveth import bridge, config, request
from nsveth.attachment import Attachment, Links
from nsveth.errors import CNIError, Code
from nsveth.links import Link
from nsveth.result import IPConfig, Result, Route

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}


def load(**fields):
    doc = {"cniVersion": "1.0.0", "name": "n", "type": "nsveth", "ipam": {"type": "host-local"}, **fields}
    return config.load(json.dumps(doc).encode(), request.parse(ENV))


def test_bridge_defaults_and_implied_gateway():
    conf = load(mode="bridge")
    assert conf.bridge.name == "nsveth0" and not conf.bridge.is_gateway
    conf = load(mode="bridge", isDefaultGateway=True)
    assert conf.bridge.is_gateway and conf.bridge.is_default_gateway


@pytest.mark.parametrize("field,value", [("bridge", "br0"), ("isGateway", True), ("hairpinMode", False), ("vlan", 3)])
def test_bridge_fields_outside_bridge_mode_are_code_2(field, value):
    for mode in ({}, {"mode": "ptp"}):
        with pytest.raises(CNIError) as e:
            load(**mode, **{field: value})
        assert e.value.code == Code.UNSUPPORTED_FIELD and field in e.value.msg and json.dumps(value) in e.value.details


def test_hairpin_with_promisc_is_code_7():
    with pytest.raises(CNIError) as e:
        load(mode="bridge", hairpinMode=True, promiscMode=True)
    assert e.value.code == Code.INVALID_CONFIG and "hairpinMode" in e.value.msg and "promiscMode" in e.value.msg
    load(mode="bridge", hairpinMode=True, promiscMode=False)


@pytest.mark.parametrize("vlan", [-1, 4095, 1.5, "3"])
def test_vlan_range(vlan):
    with pytest.raises(CNIError) as e:
        load(mode="bridge", vlan=vlan)
    assert e.value.code == Code.INVALID_CONFIG and "vlan" in e.value.msg


def test_vlan_with_gateway_is_code_7():
    with pytest.raises(CNIError) as e:
        load(mode="bridge", vlan=4, isDefaultGateway=True)
    assert e.value.code == Code.INVALID_CONFIG and "vlan" in e.value.msg
    assert load(mode="bridge", vlan=4094).bridge.vlan == 4094


def test_ipmasq_in_both_modes():
    assert load(ipMasq=True).ip_masq
    assert load(mode="bridge", ipMasq=True, ipMasqBackend="iptables").ip_masq_backend == "iptables"


def attachment(conf, lease):
    req = request.parse(ENV)
    return Attachment(req, conf, None, None, None, "nsvhost", lease=lease)  # type: ignore[arg-type]


def ipc(addr, gw=None):
    return IPConfig(ipaddress.ip_interface(addr), ipaddress.ip_address(gw) if gw else None)


def test_prepare_fills_gateway_and_default_routes():
    lease = Result(ips=(ipc("10.1.0.5/24"), ipc("fd00::5/64", "fd00::9")), routes=())
    att = attachment(load(mode="bridge", isDefaultGateway=True), lease)
    att = dataclasses.replace(att, lease=bridge.prepare(att))
    assert att.lease is not lease and lease.routes == ()  # the lease IPAM gave is left as it was
    assert [str(ip.gateway) for ip in att.lease.ips] == ["10.1.0.1", "fd00::9"]
    assert [(str(r.dst), str(r.gw)) for r in att.lease.routes] == [("0.0.0.0/0", "10.1.0.1"), ("::/0", "fd00::9")]
    assert [str(a) for a in bridge._gateway_addresses(att)] == ["10.1.0.1/24", "fd00::9/64"]


def test_prepare_keeps_ipam_default_route_and_gateway():
    lease = Result(ips=(ipc("10.1.0.5/24", "10.1.0.254"),), routes=(Route(ipaddress.ip_network("0.0.0.0/0")),))
    att = attachment(load(mode="bridge", isDefaultGateway=True), lease)
    att = dataclasses.replace(att, lease=bridge.prepare(att))
    assert str(att.lease.ips[0].gateway) == "10.1.0.254"
    assert len(att.lease.routes) == 1 and att.lease.routes[0].gw is None


def test_prepare_without_gateway_mode_leaves_lease_alone():
    lease = Result(ips=(ipc("10.1.0.5/24"),))
    att = attachment(load(mode="bridge"), lease)
    att = dataclasses.replace(att, lease=bridge.prepare(att))
    assert att.lease.ips[0].gateway is None and att.lease.routes == ()
    assert bridge._gateway_addresses(att) == []


def test_prepare_refuses_subnet_too_small_for_a_gateway():
    att = attachment(load(mode="bridge", isGateway=True), Result(ips=(ipc("10.1.0.5/31"),)))
    with pytest.raises(CNIError) as e:
        bridge.prepare(att)
    assert e.value.code == Code.INVALID_CONFIG


def link(index, name, kind="veth", peer=0, master=0):
    return Link(index, name, kind, "aa:bb:cc:dd:ee:ff", 1500, 0x1, master, peer, None)


def attach_port_calls(monkeypatch, **fields):
    """The netlink requests _attach_port makes for a bridge-mode config, recorded instead of sent."""
    calls = []
    monkeypatch.setattr(bridge.links, "set_attrs", lambda sock, index, attrs: calls.append(("set_attrs", index, attrs)))
    monkeypatch.setattr(bridge.links, "get", lambda sock, index=None, name=None: None)
    monkeypatch.setattr(bridge, "_set_port_data", lambda sock, index, data: calls.append(("port_data", index, data)))
    monkeypatch.setattr(
        bridge, "_port_vlan", lambda sock, index, vid, flags, msg_type: calls.append(("vlan", index, vid, flags, msg_type))
    )
    att = attachment(load(mode="bridge", bridge="br0", **fields), None)
    att = dataclasses.replace(att, links=Links(host=link(7, "nsvhost"), pod=link(2, "eth0")))
    port = bridge._attach_port(att, link(3, "br0", kind="bridge"))
    assert port.index == 7  # links.get found nothing: the port link is kept
    assert calls[0] == ("set_attrs", 7, [("IFLA_MASTER", 3)])
    return [c[2:] for c in calls if c[0] == "vlan"]


def test_attach_port_vlan_leaves_the_default_vlan(monkeypatch):
    pvid_untagged = bridge.BRIDGE_VLAN_INFO_PVID | bridge.BRIDGE_VLAN_INFO_UNTAGGED
    assert attach_port_calls(monkeypatch, vlan=100) == [
        (100, pvid_untagged, bridge.netlink.RTM_SETLINK),
        (bridge.DEFAULT_VLAN, 0, bridge.netlink.RTM_DELLINK),
    ]


def test_attach_port_vlan_1_keeps_it(monkeypatch):
    """vlan 1 is the default VLAN: leaving it would remove the VLAN just configured."""
    pvid_untagged = bridge.BRIDGE_VLAN_INFO_PVID | bridge.BRIDGE_VLAN_INFO_UNTAGGED
    vlan_calls = attach_port_calls(monkeypatch, vlan=1)
    assert vlan_calls == [(1, pvid_untagged, bridge.netlink.RTM_SETLINK)]
    assert not [c for c in vlan_calls if c[2] == bridge.netlink.RTM_DELLINK]


def test_attach_port_without_vlan_sends_no_vlan_request(monkeypatch):
    assert attach_port_calls(monkeypatch) == []
    assert attach_port_calls(monkeypatch, hairpinMode=True) == []


def test_the_attachment_is_frozen_and_prepare_returns_the_lease():
    """Steps return what they learn; nothing fills in the attachment behind the story's back."""
    lease = Result(ips=(ipc("10.1.0.5/24"),))
    att = attachment(load(mode="bridge", isGateway=True), lease)
    with pytest.raises(dataclasses.FrozenInstanceError):
        att.lease = None  # type: ignore[misc]
    assert str(bridge.prepare(att).ips[0].gateway) == "10.1.0.1"
    assert att.lease is lease and att.lease.ips[0].gateway is None
