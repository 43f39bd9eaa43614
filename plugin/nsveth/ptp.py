"""Point-to-point wiring (the reference `ptp` semantics).

A veth is not IFF_POINTOPOINT, so instead of a connected subnet route the pod
gets a /32 (/128) link route to the gateway and routes via it; the host end
carries the gateway address itself (the same address on every host veth) and
a /32 (/128) route back to each pod address. All pod traffic is routed by the
host, never bridged.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
from collections.abc import Sequence

from . import addresses, links, procsys, routes, veth
from .attachment import Attachment, Links
from .errors import CNIError, Code, kernel
from .links import Link
from .netlink import NetlinkError
from .result import Interface, IPAddress, IPConfig, IPNetwork, Result


def _host_prefix(address: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(f"{address}/{address.max_prefixlen}")


# The links are a veth pair, as in bridge mode.
POD_KIND = veth.POD_KIND
create = veth.create
rollback = veth.rollback
delete = veth.delete


def preflight(att: Attachment) -> None:
    """Nothing to refuse before the lease: overlaps are checked in `prepare`."""


def _require_gateways(att: Attachment) -> list[IPConfig]:
    ips = list(att.leased.ips)
    for ip in ips:
        if ip.gateway is None:
            raise CNIError(
                Code.INVALID_CONFIG,
                f"IPAM gave {ip.address} without a gateway; point-to-point mode routes through one (set it in ipam)",
            )
    return ips


def prepare(att: Attachment) -> Result:
    """The lease is used as IPAM gave it, unless the host already routes one
    of its addresses to another interface (see `_refuse_overlap`)."""
    for ip in att.leased.ips:
        _refuse_overlap(att, ip.address.ip)
    return att.leased


def _refuse_overlap(att: Attachment, address: IPAddress) -> None:
    """Code 7 when the host routes `address` by a host route (/32, /128)
    through an interface other than this attachment's host veth.

    Two networks handing out the same addresses (overlapping IPAM ranges)
    would otherwise both "succeed": the kernel keeps the first pod's /32
    (/128) route and the second pod silently gets no traffic. The host veth
    of this very attachment (a leftover that ADD replaces) does not count.
    """
    r = routes.matching(att.host, address)  # one lookup: a node may have thousands of routes
    if r is None or r.dst != _host_prefix(address):
        return
    mine = links.get(att.host, name=att.host_name)
    if mine is None or r.oif != mine.index:
        owner = links.get(att.host, index=r.oif) if r.oif else None
        where = owner.name if owner is not None else (f"ifindex {r.oif}" if r.oif else "a multipath route")
        raise CNIError(
            Code.INVALID_CONFIG,
            f"pod address {address} is already routed to {where} on this host: another network (or a route "
            f"added by hand) uses the same addresses; give each network its own subnet "
            f"(this ADD is rolled back, the lease released)",
        )


def setup_host(att: Attachment) -> Links:
    """Gateway address(es) on the host veth, routes back to the pod, forwarding on (the links are unchanged)."""
    index = att.host_veth.index
    for ip in _require_gateways(att):
        gw = ip.gateway
        assert gw is not None  # _require_gateways
        addresses.add(att.host, index, ipaddress.ip_interface(f"{gw}/{gw.max_prefixlen}"), prefix_route=False, exist_ok=True)
        try:
            routes.add(att.host, _host_prefix(ip.address.ip), index, scope=routes.RT_SCOPE_LINK)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise
            # Another ADD took the route after `prepare` looked: the same refusal
            # (and if that route is gone again already, ours goes in now).
            _refuse_overlap(att, ip.address.ip)
            routes.add(att.host, _host_prefix(ip.address.ip), index, scope=routes.RT_SCOPE_LINK, exist_ok=True)
    procsys.enable_forwarding({ip.address.version for ip in att.leased.ips})
    return att.linked


def setup_pod(att: Attachment) -> None:
    """Addresses (without the kernel's subnet route), link up, then routes."""
    pod, index = att.pod_socket, att.pod_interface.index
    ips = _require_gateways(att)
    for ip in ips:
        addresses.add(pod, index, ip.address, prefix_route=False)
    links.set_up(pod, index)
    gateways = att.gateways
    for ip in ips:
        gw = ip.gateway
        assert gw is not None  # _require_gateways
        routes.add(pod, _host_prefix(gw), index, src=ip.address.ip, scope=routes.RT_SCOPE_LINK, exist_ok=True)
        if ip.address.network.prefixlen < ip.address.max_prefixlen:
            routes.add(pod, ip.address.network, index, gw=gw, src=ip.address.ip, exist_ok=True)
    routes.add_lease_routes(pod, index, att.leased.routes, gateways, point_to_point=True)


def withdraw(att: Attachment, gone: Sequence[IPConfig]) -> None:
    """The host routes to addresses the pod no longer has go (the gateway address stays: other pods share it)."""
    for ip in gone:
        kernel(f"remove the host route to {ip.address.ip}", routes.delete, att.host, _host_prefix(ip.address.ip), att.host_veth.index)


def settle(att: Attachment) -> None:
    """Nothing to wait for: the host veth forwards as soon as the pod end is up."""


def interfaces(att: Attachment) -> tuple[tuple[Interface, ...], int]:
    """[host veth, pod interface] and the index of the pod interface."""
    host, pod = att.host_veth, att.pod_interface
    return (
        Interface(name=att.host_name, mac=host.mac),
        Interface(name=att.req.ifname, mac=pod.mac, sandbox=att.req.netns, mtu=pod.mtu),
    ), 1


def observe(att: Attachment, pod: Link, pod_index: int) -> list[str]:
    """What differs on the host side from what create and setup_host made (for CHECK)."""
    problems, found = veth.observe(att, pod, pod_index)
    if found is None:
        return problems
    att = dataclasses.replace(att, links=found)
    index = att.host_veth.index
    have_addrs = {a for a, _ in addresses.on_link(att.host, index)}
    have_routes = {(r.dst, r.oif) for r in routes.dump(att.host)}
    for ip in att.leased.ips:
        if ip.gateway is not None:
            want = ipaddress.ip_interface(f"{ip.gateway}/{ip.gateway.max_prefixlen}")
            if want not in have_addrs:
                problems.append(f"host veth {att.host_name} lacks gateway address {want}")
        if (_host_prefix(ip.address.ip), index) not in have_routes:
            problems.append(f"host route to {ip.address.ip} via {att.host_name} is missing")
    return problems
