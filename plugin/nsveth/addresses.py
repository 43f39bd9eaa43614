"""Interface addresses over netlink."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import log, netlink
from .netlink import NetlinkError, Socket, ifaddrmsg
from .result import IPConfig, IPInterface, Result

if TYPE_CHECKING:
    from .attachment import Attachment

IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200


def _family(address: IPInterface) -> int:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def add(sock: Socket, index: int, address: IPInterface, prefix_route: bool = True, exist_ok: bool = False) -> None:
    """Add an address. IPv6 addresses skip duplicate address detection (no
    waiting for a tentative address: the IPAM lease already makes it unique).
    `prefix_route=False` keeps the kernel from adding the subnet route."""
    flags = IFA_F_NODAD if address.version == 6 else 0
    if not prefix_route:
        flags |= IFA_F_NOPREFIXROUTE
    msg = ifaddrmsg()
    msg["family"] = _family(address)
    msg["prefixlen"] = address.network.prefixlen
    msg["index"] = index
    msg["flags"] = flags & 0xFF
    attrs = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip)), ("IFA_FLAGS", flags)]
    msg["attrs"] = attrs
    try:
        sock.request(msg, netlink.RTM_NEWADDR, netlink.NLM_F_CREATE | netlink.NLM_F_EXCL)
    except NetlinkError as e:
        if not (exist_ok and e.errno == errno.EEXIST):
            raise


def delete(sock: Socket, index: int, address: IPInterface) -> None:
    msg = ifaddrmsg()
    msg["family"] = _family(address)
    msg["prefixlen"] = address.network.prefixlen
    msg["index"] = index
    msg["attrs"] = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip))]
    sock.request(msg, netlink.RTM_DELADDR)


def drop_vanished_ipv6(att: Attachment, withdraw: Callable[[Attachment, Sequence[IPConfig]], None]) -> Result:
    """The lease without the IPv6 addresses the kernel removed (disable_ipv6=1
    among the sysctls, or otherwise); `withdraw` (the wiring's) takes back the
    host side's share of them, so nothing advertises or routes an address that
    is not there."""
    lease = att.leased
    if not any(ip.address.version == 6 for ip in lease.ips):
        return lease
    present = {a for a, _ in on_link(att.pod_socket, att.pod_interface.index)}
    gone = [ip for ip in lease.ips if ip.address.version == 6 and ip.address not in present]
    if not gone:
        return lease
    log.get().warning(
        "IPv6 address(es) %s are not on %s after its sysctls were applied (disable_ipv6?): left out of the result",
        ", ".join(str(ip.address) for ip in gone),
        att.req.ifname,
    )
    ips = tuple(ip for ip in lease.ips if ip not in gone)
    keep_v6_routes = any(ip.address.version == 6 for ip in ips)
    kept_routes = tuple(r for r in lease.routes if r.dst.version == 4 or keep_v6_routes)
    withdraw(att, gone)
    return dataclasses.replace(lease, ips=ips, routes=kept_routes)


def on_link(sock: Socket, index: int) -> list[tuple[IPInterface, int]]:
    """(address, IFA flags) of every address on the link."""
    msg = ifaddrmsg()
    msg["family"] = socket.AF_UNSPEC
    out = []
    for m in sock.dump(msg, netlink.RTM_GETADDR):
        if m["index"] != index:
            continue
        ip = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
        flags = m.get_attr("IFA_FLAGS") or m["flags"]
        out.append((ipaddress.ip_interface(f"{ip}/{m['prefixlen']}"), flags))
    return out
