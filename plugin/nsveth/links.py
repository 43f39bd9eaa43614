"""Links over netlink: the veth pair, lookups, up/down, delete."""

from __future__ import annotations

import dataclasses
import errno
import socket
from typing import Any

from . import netlink
from .netlink import Message, NetlinkError, Socket, ifinfmsg

IFF_UP = 0x1
IFF_PROMISC = 0x100


@dataclasses.dataclass(frozen=True)
class Link:
    """A link as netlink reports it."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    flags: int
    master: int  # ifindex of the bridge it is enslaved to, 0 if none
    peer_index: int  # IFLA_LINK: for a veth, the peer's ifindex (in its netns)
    peer_netnsid: int | None  # IFLA_LINK_NETNSID: peer's netns as seen from here
    alias: str = ""  # IFLA_IFALIAS (`ip link set X alias Y`); nsveth marks the bridges it creates

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _from_msg(m: Message) -> Link:
    return Link(
        index=m["index"],
        name=m.get_attr("IFLA_IFNAME"),
        kind=info(m, "IFLA_INFO_KIND") or "",
        mac=(m.get_attr("IFLA_ADDRESS") or "").lower(),
        mtu=m.get_attr("IFLA_MTU") or 0,
        flags=m["flags"],
        master=m.get_attr("IFLA_MASTER") or 0,
        peer_index=m.get_attr("IFLA_LINK") or 0,
        peer_netnsid=m.get_attr("IFLA_LINK_NETNSID"),
        alias=m.get_attr("IFLA_IFALIAS") or "",
    )


def info(m: Message | None, attr: str) -> Any:
    """One attribute of the link's IFLA_LINKINFO (kind, kind data, port data), None if absent."""
    linkinfo = m.get_attr("IFLA_LINKINFO") if m is not None else None
    return linkinfo.get_attr(attr) if linkinfo is not None else None


def _gone(e: NetlinkError) -> bool:
    """Whether the kernel's refusal means the link does not exist (ENODEV; ENOENT on some paths)."""
    return e.errno in (errno.ENODEV, errno.ENOENT)


def message(sock: Socket, name: str | None = None, index: int | None = None) -> Message | None:
    """The link's netlink message by name or index, None if there is none."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    if index is not None:
        msg["index"] = index
    else:
        msg["attrs"] = [("IFLA_IFNAME", name)]
    try:
        return sock.get(msg, netlink.RTM_GETLINK)
    except NetlinkError as e:
        if _gone(e):
            return None
        raise


def get(sock: Socket, name: str | None = None, index: int | None = None) -> Link | None:
    """The link by name or index, None if there is none."""
    found = message(sock, name=name, index=index)
    return _from_msg(found) if found is not None else None


def dump(sock: Socket) -> list[Link]:
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    return [_from_msg(m) for m in sock.dump(msg, netlink.RTM_GETLINK)]


def create_veth(
    host: Socket, host_name: str, peer_name: str, peer_netns_fd: int, mtu: int | None, peer_mac: str | None
) -> None:
    """Create `host_name` here with its peer `peer_name` directly in the pod netns.

    Creating the peer in its final netns is one netlink request, much cheaper
    than creating both ends here and moving one. Raises NetlinkError (EEXIST
    when either name is taken).
    """
    peer: list[tuple[str, object]] = [("IFLA_IFNAME", peer_name), ("IFLA_NET_NS_FD", peer_netns_fd)]
    mine: list[tuple[str, object]] = [("IFLA_IFNAME", host_name)]
    if mtu:
        peer.append(("IFLA_MTU", mtu))
        mine.append(("IFLA_MTU", mtu))
    if peer_mac:
        peer.append(("IFLA_ADDRESS", peer_mac))
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["attrs"] = mine + [
        (
            "IFLA_LINKINFO",
            {
                "attrs": [
                    ("IFLA_INFO_KIND", "veth"),
                    ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}),
                ]
            },
        )
    ]
    host.request(msg, netlink.RTM_NEWLINK, netlink.NLM_F_CREATE | netlink.NLM_F_EXCL)


def delete(sock: Socket, name: str) -> bool:
    """Delete a link by name; False if it was already gone."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["attrs"] = [("IFLA_IFNAME", name)]
    try:
        sock.request(msg, netlink.RTM_DELLINK)
    except NetlinkError as e:
        # ENODEV: gone; the peer of a veth dies with it, so a racing delete of
        # the other end shows up here too.
        if _gone(e):
            return False
        raise
    return True


def set_flags(sock: Socket, index: int, flags: int, mask: int) -> None:
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["flags"] = flags
    msg["change"] = mask
    sock.request(msg, netlink.RTM_NEWLINK)


def set_up(sock: Socket, index: int) -> None:
    set_flags(sock, index, IFF_UP, IFF_UP)


def set_attrs(sock: Socket, index: int, attrs: list[tuple[str, object]]) -> None:
    """Change attributes of an existing link (e.g. IFLA_MASTER, IFLA_MTU)."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["attrs"] = attrs
    sock.request(msg, netlink.RTM_NEWLINK)
