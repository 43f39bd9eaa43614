"""Routes over netlink."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
from collections.abc import Iterable, Mapping

from . import netlink
from .errors import CNIError, Code
from .netlink import NetlinkError, Socket, rtmsg
from .result import IPAddress, IPNetwork, Route

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTNH_F_ONLINK = 0x4
RTAX_MTU, RTAX_ADVMSS = 2, 8
RTM_F_FIB_MATCH = 0x2000  # a lookup answers with the matching FIB entry (its own prefix), not the flow


@dataclasses.dataclass(frozen=True)
class Entry:
    """A route as netlink reports it."""

    dst: IPNetwork
    gw: IPAddress | None
    oif: int
    table: int
    scope: int
    src: IPAddress | None = None


def add(
    sock: Socket,
    dst: IPNetwork,
    oif: int,
    gw: IPAddress | None = None,
    src: IPAddress | None = None,
    scope: int | None = None,
    onlink: bool = False,
    table: int | None = None,
    priority: int | None = None,
    mtu: int | None = None,
    advmss: int | None = None,
    exist_ok: bool = False,
) -> None:
    msg = rtmsg()
    msg["family"] = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    msg["dst_len"] = dst.prefixlen
    msg["table"] = table if table is not None and table < 256 else RT_TABLE_MAIN
    msg["proto"] = RTPROT_BOOT
    msg["type"] = RTN_UNICAST
    msg["scope"] = scope if scope is not None else (RT_SCOPE_UNIVERSE if gw else RT_SCOPE_LINK)
    msg["flags"] = RTNH_F_ONLINK if onlink else 0
    attrs: list[tuple[str, object]] = [("RTA_DST", str(dst.network_address)), ("RTA_OIF", oif)]
    if gw is not None:
        attrs.append(("RTA_GATEWAY", str(gw)))
    if src is not None:
        attrs.append(("RTA_PREFSRC", str(src)))
    if table is not None and table >= 256:
        attrs.append(("RTA_TABLE", table))
    if priority is not None:
        attrs.append(("RTA_PRIORITY", priority))
    metrics = []
    if mtu:
        metrics.append(("RTAX_MTU", mtu))
    if advmss:
        metrics.append(("RTAX_ADVMSS", advmss))
    if metrics:
        attrs.append(("RTA_METRICS", {"attrs": metrics}))
    msg["attrs"] = attrs
    try:
        sock.request(msg, netlink.RTM_NEWROUTE, netlink.NLM_F_CREATE | netlink.NLM_F_EXCL)
    except NetlinkError as e:
        if not (exist_ok and e.errno == errno.EEXIST):
            raise


def add_lease_routes(
    sock: Socket, oif: int, lease_routes: Iterable[Route], gateways: Mapping[int, IPAddress], point_to_point: bool
) -> None:
    """The lease's routes through `oif`, each via its own gateway or else the lease's gateway of its family.

    Point-to-point, every route needs a gateway, and one other than the
    lease's has no link route, so it is reached on-link; on a shared L2 link
    (bridge) a route without any gateway is a direct one, in its own scope.
    """
    for r in lease_routes:
        gw = r.gw or gateways.get(r.dst.version)
        if point_to_point and gw is None:
            raise CNIError(Code.INVALID_CONFIG, f"route {r.dst} has no gateway and IPAM gave no address of its family")
        add(
            sock,
            r.dst,
            oif,
            gw=gw,
            scope=None if point_to_point else r.scope,
            onlink=point_to_point and gw not in gateways.values(),
            table=r.table,
            priority=r.priority,
            mtu=r.mtu,
            advmss=r.advmss,
            exist_ok=True,
        )


def delete(sock: Socket, dst: IPNetwork, oif: int, table: int | None = None) -> bool:
    """Remove the route to `dst` through `oif`; False if there was none."""
    msg = rtmsg()
    msg["family"] = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    msg["dst_len"] = dst.prefixlen
    msg["table"] = table if table is not None and table < 256 else RT_TABLE_MAIN
    attrs: list[tuple[str, object]] = [("RTA_DST", str(dst.network_address)), ("RTA_OIF", oif)]
    if table is not None and table >= 256:
        attrs.append(("RTA_TABLE", table))
    msg["attrs"] = attrs
    try:
        sock.request(msg, netlink.RTM_DELROUTE)
    except NetlinkError as e:
        if e.errno == errno.ESRCH:
            return False
        raise
    return True


def matching(sock: Socket, address: IPAddress) -> Entry | None:
    """The unicast route the kernel would use to reach `address` (`ip route get
    fibmatch`), with its own prefix; None when no route, or one of another type
    (local, unreachable, blackhole), matches. One lookup, however many routes
    the host has."""
    msg = rtmsg()
    msg["family"] = socket.AF_INET if address.version == 4 else socket.AF_INET6
    msg["dst_len"] = address.max_prefixlen
    msg["flags"] = RTM_F_FIB_MATCH
    msg["attrs"] = [("RTA_DST", str(address))]
    try:
        m = sock.get(msg, netlink.RTM_GETROUTE)
    except NetlinkError as e:
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESRCH, errno.ENOENT):
            return None
        raise
    if m is None or m["type"] != RTN_UNICAST:
        return None
    dst = m.get_attr("RTA_DST") or ("0.0.0.0" if address.version == 4 else "::")
    gw = m.get_attr("RTA_GATEWAY")
    return Entry(
        dst=ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False),
        gw=ipaddress.ip_address(gw) if gw else None,
        oif=m.get_attr("RTA_OIF") or 0,
        table=m.get_attr("RTA_TABLE") or m["table"],
        scope=m["scope"],
    )


def dump(sock: Socket, family: int = socket.AF_UNSPEC) -> list[Entry]:
    """Unicast routes of every table (RTA_TABLE carries tables >= 256)."""
    msg = rtmsg()
    msg["family"] = family
    out = []
    for m in sock.dump(msg, netlink.RTM_GETROUTE):
        if m["type"] != RTN_UNICAST:
            continue
        fam = m["family"]
        dst_attr = m.get_attr("RTA_DST") or ("0.0.0.0" if fam == socket.AF_INET else "::")
        gw = m.get_attr("RTA_GATEWAY")
        src = m.get_attr("RTA_PREFSRC")
        out.append(
            Entry(
                dst=ipaddress.ip_network(f"{dst_attr}/{m['dst_len']}", strict=False),
                gw=ipaddress.ip_address(gw) if gw else None,
                oif=m.get_attr("RTA_OIF") or 0,
                table=m.get_attr("RTA_TABLE") or m["table"],
                scope=m["scope"],
                src=ipaddress.ip_address(src) if src else None,
            )
        )
    return out
