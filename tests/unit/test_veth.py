"""veth.compare: CHECK of the host veth that both wirings (ptp, bridge) make, against prevResult (pure)."""

from __future__ import annotations

import dataclasses
import ipaddress as ipa

import pytest
from nsveth import veth
from nsveth.links import IFF_UP, Link
from nsveth.result import Interface, IPConfig, Result

NETNS = "/run/netns/pod1"
HOST = "nsv0123456789ab"
POD_MAC = "0a:58:0a:01:00:05"

PREV = Result(
    interfaces=(Interface(HOST, mac="0a:58:0a:01:00:01"), Interface("eth0", mac=POD_MAC, sandbox=NETNS)),
    ips=(IPConfig(ipa.ip_interface("10.1.0.5/24"), ipa.ip_address("10.1.0.1"), 1),),
)
POD_INDEX = 1
POD = Link(index=2, name="eth0", kind="veth", mac=POD_MAC, mtu=1450, flags=IFF_UP, master=0, peer_index=17, peer_netnsid=0)
HOST_LINK = Link(index=17, name=HOST, kind="veth", mac="0a:58:0a:01:00:01", mtu=1450, flags=IFF_UP, master=0, peer_index=2, peer_netnsid=1)


def compare(host: Link | None = HOST_LINK, pod: Link = POD, prev: Result = PREV, pod_index: int = POD_INDEX, not_host: str | None = None):
    return veth.compare(prev, pod_index, pod, host, not_host)


def host(**changes) -> Link:
    return dataclasses.replace(HOST_LINK, **changes)


def pod(**changes) -> Link:
    return dataclasses.replace(POD, **changes)


def test_as_added():
    assert compare() == []


def test_host_veth_missing():
    assert compare(host=None) == [f"host veth {HOST} is missing"]


def test_host_veth_missing_without_host_interface_in_prev():
    prev = dataclasses.replace(PREV, interfaces=(Interface("eth0", mac=POD_MAC, sandbox=NETNS),))
    assert compare(host=None, prev=prev, pod_index=0) == ["host veth is missing"]


def test_host_veth_other_name():
    problems = compare(host=host(name="nsvffffffffffff"))
    assert problems == [f"host veth is nsvffffffffffff, prevResult lists ['{HOST}']"]


@pytest.mark.parametrize(
    "host_changes,pod_changes",
    [({"peer_index": 99}, {}), ({}, {"peer_index": 99}), ({"kind": "bridge"}, {}), ({"index": 18}, {})],
    ids=["host-points-elsewhere", "pod-points-elsewhere", "host-not-veth", "different-index"],
)
def test_host_veth_not_peer(host_changes, pod_changes):
    problems = compare(host=host(**host_changes), pod=pod(**pod_changes))
    assert problems == [f"host veth {HOST} is not the peer of eth0"]


def test_host_veth_down():
    assert compare(host=host(flags=0)) == [f"host veth {HOST} is down"]


def test_host_problems_reported_together():
    assert len(compare(host=host(name="nsvffffffffffff", flags=0, peer_index=5))) == 3


def test_bridge_mode_skips_the_bridge_when_naming_the_host_veth():
    """bridge.observe names its bridge as not the host veth: prevResult lists [bridge, host veth, pod]."""
    prev = Result(interfaces=(Interface("br0", "aa:aa:aa:aa:aa:aa"), Interface(HOST), Interface("eth0", POD_MAC, NETNS)))
    assert compare(host=None, prev=prev, pod_index=2, not_host="br0") == [f"host veth {HOST} is missing"]
    assert compare(prev=prev, pod_index=2, not_host="br0") == []
    # Without it, the bridge would be taken for the host veth's listed name.
    assert compare(host=None, prev=prev, pod_index=2) == ["host veth br0 is missing"]
