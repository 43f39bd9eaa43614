"""ptp mode refuses a pod address the host already routes to another interface (overlapping networks)."""

from __future__ import annotations

import pytest
from nsveth.errors import Code
from support import Netns, Network, host_veths

SUBNETS = {4: ("10.77.0.0/24", "10.77.0.2", "10.77.0.1"), 6: ("fd00:77::/64", "fd00:77::2", "fd00:77::1")}


def two_networks(tmp_path, family: int) -> tuple[Network, Network]:
    """Two networks with the same subnet and separate IPAM state: both hand out the same first address."""
    subnet = SUBNETS[family][0]
    return Network(str(tmp_path / "a"), subnet), Network(str(tmp_path / "b"), subnet)


def assert_refused(reply, address: str, owner: str) -> None:
    assert reply.status != 0 and reply.code == Code.INVALID_CONFIG, reply.stdout
    msg = reply.json["msg"]
    assert f"pod address {address} is already routed to {owner}" in msg, msg


@pytest.mark.parametrize("family", [4, 6])
def test_second_network_with_the_same_address_is_refused_and_leaves_nothing(plugin, tmp_path, family):
    first, second = two_networks(tmp_path, family)
    _, address, gateway = SUBNETS[family]
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        ok = plugin.run("ADD", first.conf(), container_id="ctr-first", netns=a.path)
        assert ok.status == 0, ok.stdout
        (owner,) = host_veths(plugin.host)
        reply = plugin.run("ADD", second.conf(), container_id="ctr-second", netns=b.path)
        assert_refused(reply, address, owner)
        # Rolled back: no veth, no lease, no record, nothing in the pod.
        assert host_veths(plugin.host) == [owner]
        assert second.leases() == [] and second.state_files() == []
        assert "eth0" not in b.links()
        # The first pod keeps its route and its traffic.
        flag = "-4" if family == 4 else "-6"
        dsts = {r["dst"]: r.get("dev") for r in plugin.host.routes(flag)}
        assert dsts.get(address) == owner, dsts
        assert a.run("ping", "-c1", "-W2", gateway).returncode == 0
        # The runtime's DEL after the failed ADD is harmless to the first pod.
        assert plugin.run("DEL", second.conf(), container_id="ctr-second", netns=b.path).status == 0
        assert host_veths(plugin.host) == [owner]
        assert a.run("ping", "-c1", "-W2", gateway).returncode == 0
        assert plugin.run("DEL", first.conf(), container_id="ctr-first", netns=a.path).status == 0
        assert host_veths(plugin.host) == []
    finally:
        a.delete()
        b.delete()


def test_a_route_that_appears_after_the_check_is_refused_the_same_way(inproc, tmp_path, monkeypatch):
    """The race: another ADD adds the host route between our look and our route (EEXIST)."""
    from nsveth import ptp

    first, second = two_networks(tmp_path, 4)
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        assert inproc.run("ADD", first.conf(), container_id="ctr-first", netns=a.path).status == 0
        (owner,) = host_veths(inproc.host)
        monkeypatch.setattr(ptp, "prepare", lambda att: att.leased)  # the look found nothing yet
        reply = inproc.run("ADD", second.conf(), container_id="ctr-second", netns=b.path)
        assert_refused(reply, "10.77.0.2", owner)
        assert host_veths(inproc.host) == [owner]
        assert second.leases() == [] and second.state_files() == []
        assert "eth0" not in b.links()
        assert a.run("ping", "-c1", "-W2", "10.77.0.1").returncode == 0
        assert inproc.run("DEL", first.conf(), container_id="ctr-first", netns=a.path).status == 0
    finally:
        a.delete()
        b.delete()


def test_a_route_added_by_hand_is_named(inproc, net, pod_ns):
    """Not only other pods: any host route to the address through another interface."""
    inproc.host.run("ip", "link", "add", "nsvtmine", "type", "veth", "peer", "name", "nsvtpeer")
    inproc.host.run("ip", "link", "set", "nsvtmine", "up")
    inproc.host.run("ip", "route", "add", "10.77.0.2/32", "dev", "nsvtmine")
    reply = inproc.run("ADD", net.conf(), container_id="ctr-hand", netns=pod_ns.path)
    assert_refused(reply, "10.77.0.2", "nsvtmine")
    assert net.leases() == [] and net.state_files() == [] and "eth0" not in pod_ns.links()


def test_a_wider_route_to_another_interface_is_no_overlap(inproc, net, pod_ns):
    """Only a host route (/32, /128) is another pod: a route to a whole subnet (the node's own LAN) is not."""
    inproc.host.run("ip", "link", "add", "nsvtwide", "type", "veth", "peer", "name", "nsvtwpeer")
    inproc.host.run("ip", "link", "set", "nsvtwide", "up")
    inproc.host.run("ip", "route", "add", "10.77.0.0/16", "dev", "nsvtwide")
    reply = inproc.run("ADD", net.conf(), container_id="ctr-wide", netns=pod_ns.path)
    assert reply.status == 0, reply.stdout
    assert inproc.run("DEL", net.conf(), container_id="ctr-wide", netns=pod_ns.path).status == 0
