"""check: CHECK's pure comparison of prevResult with the observed pod interface, addresses and routes."""

from __future__ import annotations

import dataclasses
import ipaddress as ipa

import pytest
from nsveth import check, config
from nsveth.errors import CNIError, Code
from nsveth.links import IFF_UP, Link
from nsveth.result import Interface, IPConfig, Result, Route
from nsveth.routes import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, Entry

NETNS = "/run/netns/pod1"
HOST = "nsv0123456789ab"
POD_MAC = "0a:58:0a:01:00:05"
HOST_MAC = "0a:58:0a:01:00:01"

PREV = Result(
    interfaces=(Interface(HOST, mac=HOST_MAC), Interface("eth0", mac=POD_MAC.upper(), sandbox=NETNS)),
    ips=(
        IPConfig(ipa.ip_interface("10.1.0.5/24"), ipa.ip_address("10.1.0.1"), 1),
        IPConfig(ipa.ip_interface("fd00:1::5/64"), ipa.ip_address("fd00:1::1"), 1),
    ),
    routes=(
        Route(ipa.ip_network("0.0.0.0/0")),  # gateway left implicit, as host-local often does
        Route(ipa.ip_network("10.9.0.0/16"), ipa.ip_address("10.1.0.1")),
        Route(ipa.ip_network("::/0"), ipa.ip_address("fd00:1::1")),
    ),
)
POD_INDEX = 1

POD = Link(index=2, name="eth0", kind="veth", mac=POD_MAC, mtu=1450, flags=IFF_UP, master=0, peer_index=17, peer_netnsid=0)


def entry(dst: str, gw: str | None = None, oif: int = 2, scope: int = RT_SCOPE_UNIVERSE) -> Entry:
    return Entry(ipa.ip_network(dst), ipa.ip_address(gw) if gw else None, oif, RT_TABLE_MAIN, scope)


ROUTES = (
    entry("10.1.0.1/32", scope=RT_SCOPE_LINK),
    entry("0.0.0.0/0", "10.1.0.1"),
    entry("10.9.0.0/16", "10.1.0.1"),
    entry("fd00:1::/64"),
    entry("::/0", "fd00:1::1"),
)
ADDRS = (ipa.ip_interface("10.1.0.5/24"), ipa.ip_interface("fd00:1::5/64"), ipa.ip_interface("fe80::858:aff:fe01:5/64"))

SEEN = check.Observed(pod_link=POD, pod_addresses=ADDRS, pod_routes=ROUTES)


def conf(mtu: int | None = 1450) -> config.NetConf:
    return config.NetConf(raw=b"{}", doc={}, cni_version="1.1.0", name="net1", ipam_type="host-local", mtu=mtu)


def compare(seen: check.Observed = SEEN, prev: Result = PREV, mtu: int | None = 1450) -> list[str]:
    return check.compare(prev, POD_INDEX, conf(mtu), seen, "veth")


def seen(**changes) -> check.Observed:
    return dataclasses.replace(SEEN, **changes)


def pod(**changes) -> Link:
    return dataclasses.replace(POD, **changes)


# ------------------------------------------------------- pod_interface_index
def test_index_found():
    assert check.pod_interface_index(PREV, "eth0", NETNS) == 1


def test_index_skips_same_name_without_sandbox():
    prev = dataclasses.replace(PREV, interfaces=(Interface("eth0"), Interface("eth0", sandbox=NETNS)))
    assert check.pod_interface_index(prev, "eth0", NETNS) == 1


@pytest.mark.parametrize(
    "ifname,netns,fragment",
    [
        ("eth1", NETNS, "lists no interface eth1"),
        (HOST, NETNS, f"lists no interface {HOST}"),  # the host side has no sandbox
        ("eth0", "/run/netns/other", "does not match CNI_NETNS /run/netns/other"),
    ],
)
def test_index_errors(ifname, netns, fragment):
    with pytest.raises(CNIError) as info:
        check.pod_interface_index(PREV, ifname, netns)
    assert info.value.code == Code.CHECK_FAILED
    assert fragment in info.value.msg


def test_index_no_interfaces():
    with pytest.raises(CNIError) as info:
        check.pod_interface_index(Result(), "eth0", NETNS)
    assert info.value.code == Code.CHECK_FAILED


# ------------------------------------------------------------------ compare
def test_all_as_added():
    assert compare() == []


def test_pod_interface_missing():
    problems = compare(seen(pod_link=None, pod_addresses=(), pod_routes=()))
    assert problems == ["interface eth0 is missing from the pod netns"]


@pytest.mark.parametrize("kind", ["bridge", "macvlan", "", "vxlan"])
def test_pod_wrong_kind(kind):
    problems = compare(seen(pod_link=pod(kind=kind)))
    assert len(problems) == 1
    assert "expected veth" in problems[0]
    assert (kind or "non-veth") in problems[0]


def test_pod_kind_is_the_wirings():
    """The kind comes from the wiring (Wiring.POD_KIND): check.py assumes no veth."""
    assert check.compare(PREV, POD_INDEX, conf(), SEEN, "macvlan") == ["interface eth0 is a veth link, expected macvlan"]
    assert check.compare(PREV, POD_INDEX, conf(), seen(pod_link=pod(kind="")), "macvlan") == [
        "interface eth0 is a non-macvlan link, expected macvlan"
    ]


@pytest.mark.parametrize("prev_mac", [POD_MAC, POD_MAC.upper(), "0A:58:0a:01:00:05"])
def test_mac_matches_case_insensitively(prev_mac):
    prev = dataclasses.replace(PREV, interfaces=(PREV.interfaces[0], Interface("eth0", mac=prev_mac, sandbox=NETNS)))
    assert compare(prev=prev) == []


@pytest.mark.parametrize("link_mac", ["0a:58:0a:01:00:06", "02:00:00:00:00:01"])
def test_mac_mismatch(link_mac):
    problems = compare(seen(pod_link=pod(mac=link_mac)))
    assert problems == [f"interface eth0 has MAC {link_mac}, expected {POD_MAC}"]


def test_mac_not_checked_when_prev_has_none():
    prev = dataclasses.replace(PREV, interfaces=(PREV.interfaces[0], Interface("eth0", sandbox=NETNS)))
    assert compare(seen(pod_link=pod(mac="02:00:00:00:00:09")), prev=prev) == []


def test_mtu_mismatch():
    problems = compare(seen(pod_link=pod(mtu=1500)))
    assert problems == ["interface eth0 has MTU 1500, expected 1450"]


def test_mtu_not_checked_without_config_mtu():
    assert compare(seen(pod_link=pod(mtu=1500)), mtu=None) == []


def test_pod_down():
    problems = compare(seen(pod_link=pod(flags=0)))
    assert problems == ["interface eth0 is down"]


@pytest.mark.parametrize("missing", [0, 1])
def test_address_missing(missing):
    addrs = tuple(a for n, a in enumerate(ADDRS) if n != missing)
    problems = compare(seen(pod_addresses=addrs))
    assert problems == [f"address {ADDRS[missing]} is missing from eth0"]


def test_address_prefix_matters():
    addrs = (ipa.ip_interface("10.1.0.5/16"), ADDRS[1])
    assert compare(seen(pod_addresses=addrs)) == ["address 10.1.0.5/24 is missing from eth0"]


def test_address_of_other_interface_not_required():
    prev = dataclasses.replace(PREV, ips=PREV.ips + (IPConfig(ipa.ip_interface("10.7.0.1/24"), None, 0),))
    assert compare(prev=prev) == []


def test_extra_addresses_ignored():
    assert compare(seen(pod_addresses=ADDRS + (ipa.ip_interface("192.168.5.5/24"),))) == []


def test_route_without_gw_matches_kernel_route_with_gw():
    # containernetworking/plugins#886: no false failure for an IPAM route that leaves the gateway implicit
    only_default = (entry("0.0.0.0/0", "10.1.0.1"),)
    prev = dataclasses.replace(PREV, routes=(Route(ipa.ip_network("0.0.0.0/0")),))
    assert compare(seen(pod_routes=only_default), prev=prev) == []


def test_route_without_gw_matches_kernel_route_without_gw():
    prev = dataclasses.replace(PREV, routes=(Route(ipa.ip_network("fd00:1::/64")),))
    assert compare(prev=prev) == []


def test_route_gw_must_match():
    routes = tuple(e for e in ROUTES if e.dst != ipa.ip_network("10.9.0.0/16")) + (entry("10.9.0.0/16", "10.1.0.254"),)
    assert compare(seen(pod_routes=routes)) == ["route 10.9.0.0/16 via 10.1.0.1 is missing in the pod netns"]


def test_route_with_gw_not_matched_by_direct_route():
    routes = tuple(e for e in ROUTES if e.dst != ipa.ip_network("::/0")) + (entry("::/0"),)
    assert compare(seen(pod_routes=routes)) == ["route ::/0 via fd00:1::1 is missing in the pod netns"]


@pytest.mark.parametrize("dst", ["0.0.0.0/0", "10.9.0.0/16", "::/0"])
def test_route_missing(dst):
    routes = tuple(e for e in ROUTES if e.dst != ipa.ip_network(dst))
    problems = compare(seen(pod_routes=routes))
    assert len(problems) == 1
    assert problems[0].startswith(f"route {dst}")
    assert problems[0].endswith("is missing in the pod netns")


def test_route_dst_prefix_matters():
    routes = tuple(e for e in ROUTES if e.dst != ipa.ip_network("10.9.0.0/16")) + (entry("10.9.0.0/24", "10.1.0.1"),)
    assert len(compare(seen(pod_routes=routes))) == 1


def test_all_problems_reported_together():
    bad = seen(
        pod_link=pod(mac="02:00:00:00:00:09", mtu=9000, flags=0),
        pod_addresses=(),
        pod_routes=(),
    )
    problems = compare(bad)
    assert len(problems) == 3 + 2 + 3
