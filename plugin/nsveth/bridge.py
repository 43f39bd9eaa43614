"""Bridge wiring (the reference `bridge` semantics, made safe under concurrency).

Every pod's host veth is a port of one Linux bridge. The bridge is created on
first use and never deleted (other pods use it). Whatever is shared by all
pods on the bridge (its existence, its gateway addresses, promisc, VLAN
filtering) is set up under one lock file per bridge, so two ADDs racing on a
fresh bridge never see it half-configured; netlink's EEXIST is tolerated as
well, for racers that do not share our runtime dir. What belongs to one pod
(its port: master, hairpin, VLAN) needs no lock.

The pod side is plain L2: addresses with their subnet route, routes via the
gateway, and a default route when isDefaultGateway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import ipaddress
import os
import socket
import time
from collections.abc import Iterator, Sequence

from . import addresses, links, log, netlink, procsys, result, routes, state, veth
from .attachment import Attachment, Links
from .errors import CNIError, Code
from .links import Link
from .netlink import NetlinkError, Socket, ifinfmsg
from .result import Interface, IPConfig, Result, Route

AF_BRIDGE = 7
BR_STATE_FORWARDING = 3
BRIDGE_VLAN_INFO_PVID, BRIDGE_VLAN_INFO_UNTAGGED = 0x2, 0x4
DEFAULT_VLAN = 1
# IFLA_IFALIAS of every bridge nsveth creates: `nsveth cleanup` removes only
# bridges with this mark (and no ports), never one someone else made.
MARK = "nsveth"
FORWARDING_WAIT_S = 2.0  # moby waits for its port the same way; STP off, this takes a few ms
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")


# The links are a veth pair, as in ptp mode; the host end becomes a bridge port in setup_host.
POD_KIND = veth.POD_KIND
create = veth.create
rollback = veth.rollback
delete = veth.delete


def preflight(att: Attachment) -> None:
    """A MAC the config sets that is already in use on the bridge is refused before anything is made."""
    refuse_mac_in_use(att.host, att.conf.bridge.name, att.conf.mac, att.host_name)


# ------------------------------------------------------------------ the lease
def prepare(att: Attachment) -> Result:
    """The lease completed for bridge mode, before anything uses it.

    With isGateway and no gateway from IPAM, the gateway is the first address
    of the subnet (as the reference plugin computes it). With
    isDefaultGateway, a default route via the gateway is added for each
    family unless IPAM already gave one.
    """
    conf = att.conf.bridge
    lease = att.leased
    ips = []
    for ip in lease.ips:
        gw = ip.gateway
        if gw is None and conf.is_gateway:
            net = ip.address.network
            if net.num_addresses < 4:
                raise CNIError(Code.INVALID_CONFIG, f"subnet {net} is too small for a gateway on the bridge")
            gw = net.network_address + 1
        ips.append(dataclasses.replace(ip, gateway=gw))
    extra_routes = []
    if conf.is_default_gateway:
        defaults = {r.dst.version for r in lease.routes if r.dst.prefixlen == 0}
        for version, gw in result.gateways(ips).items():
            if version not in defaults:
                extra_routes.append(Route(dst=ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0"), gw=gw))
    return dataclasses.replace(lease, ips=tuple(ips), routes=lease.routes + tuple(extra_routes))


def _gateway_addresses(att: Attachment) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses the bridge carries when isGateway: each gateway with its subnet's prefix."""
    out = []
    for ip in att.leased.ips:
        if ip.gateway is not None:
            want = ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
            if want not in out:
                out.append(want)
    return out


# ------------------------------------------------------------ MAC in use
NDA_LLADDR = "NDA_LLADDR"


def macs_in_use(sock: Socket, bridge: Link, skip_port: str) -> dict[str, str]:
    """MAC -> who uses it on `bridge`: the bridge itself and every FDB entry
    (learned or permanent) of its ports, except those of the port `skip_port`
    (a leftover of the same attachment being replaced)."""
    ports = {link.index: link.name for link in links.dump(sock) if link.master == bridge.index}
    used = {bridge.mac: f"bridge {bridge.name} itself"}
    msg = netlink.ndmsg()
    msg["family"] = AF_BRIDGE
    for entry in sock.dump(msg, netlink.RTM_GETNEIGH):
        index = entry["ifindex"]
        if index == bridge.index:
            who = f"bridge {bridge.name} itself"
        elif index in ports and ports[index] != skip_port:
            who = f"port {ports[index]} of bridge {bridge.name}"
        else:
            continue
        mac = (entry.get_attr(NDA_LLADDR) or "").lower()
        if mac:
            used.setdefault(mac, who)
    return used


def refuse_mac_in_use(sock: Socket, name: str, mac: str | None, own_port: str) -> None:
    """Code 7 when the requested pod MAC is already on the bridge: taking it
    would move another pod's FDB entry (and, with nsveth's own announcement,
    its neighbours' caches) to this pod. Checked before anything is created.
    A bridge that does not exist yet has no MAC in use."""
    if mac is None:
        return
    bridge = links.get(sock, name=name)
    if bridge is None or bridge.kind != "bridge":
        return
    user = macs_in_use(sock, bridge, own_port).get(mac.lower())
    if user is not None:
        raise CNIError(Code.INVALID_CONFIG, f"MAC address {mac} is already in use on bridge {name} ({user})")


# ----------------------------------------------------------------- host side
def setup_host(att: Attachment) -> Links:
    """The bridge (under its lock), then the host veth as one of its ports; the links with the bridge."""
    with _bridge_lock(att.conf.runtime_dir, att.conf.name, att.conf.bridge.name):
        bridge = _ensure_bridge(att)
        if att.conf.bridge.is_gateway:
            _ensure_gateway_addresses(att, bridge)
    return dataclasses.replace(att.linked, host=_attach_port(att, bridge), bridge=bridge)


@contextlib.contextmanager
def _bridge_lock(runtime_dir: str, network: str, bridge: str) -> Iterator[None]:
    """Exclusive flock on <runtimeDir>/.bridges/<bridge>.lock (dropped by the kernel if we die).

    Network names start with a letter or digit, so ".bridges" never collides
    with a network's state dir.
    """
    state.network_dir(runtime_dir, network)  # checks the runtime dir is ours
    directory = os.path.join(runtime_dir, ".bridges")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(directory, f"{bridge}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise CNIError(Code.IO_FAILURE, f"cannot open the lock of bridge {bridge} in {directory}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ensure_bridge(att: Attachment) -> Link:
    conf = att.conf
    name = conf.bridge.name
    link = links.get(att.host, name=name)
    if link is None:
        created = False
        try:
            with _vlan_support(name, conf.bridge.vlan):
                _create_bridge(att.host, name, conf.mtu, conf.bridge.vlan != 0)
            created = True
            log.get().info("created bridge %s", name)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:  # EEXIST: a racer outside our lock won; use its bridge
                raise
        link = links.get(att.host, name=name)
        if link is None:
            raise CNIError(Code.KERNEL, f"bridge {name} vanished right after it was created")
        if link.kind == "bridge":
            # Pin the MAC: otherwise the bridge takes the lowest port MAC and
            # changes it as pods come and go (stale neighbour caches everywhere).
            # The mark goes only on a bridge this ADD created (the kernel
            # ignores IFLA_IFALIAS in the creating request, so it is set here).
            mark = [("IFLA_IFALIAS", MARK)] if created else []
            links.set_attrs(att.host, link.index, [("IFLA_ADDRESS", link.mac), *mark])
            procsys.no_accept_ra(name)
    if link.kind != "bridge":
        kind = link.kind or "plain"
        raise CNIError(Code.INVALID_CONFIG, f'"{name}" already exists but is not a bridge (it is a {kind} link)')
    if conf.bridge.promisc and not link.flags & links.IFF_PROMISC:
        links.set_flags(att.host, link.index, links.IFF_PROMISC, links.IFF_PROMISC)
    if conf.bridge.vlan and not _vlan_filtering(att.host, link.index):
        with _vlan_support(name, conf.bridge.vlan):
            _set_bridge_data(att.host, link.index, [("IFLA_BR_VLAN_FILTERING", 1)])
    if not link.up:
        links.set_up(att.host, link.index)
    return links.get(att.host, index=link.index) or link


@contextlib.contextmanager
def _vlan_support(name: str, vlan: int) -> Iterator[None]:
    """A kernel built without CONFIG_BRIDGE_VLAN_FILTERING refuses VLAN filtering with EOPNOTSUPP: say so."""
    try:
        yield
    except NetlinkError as e:
        if vlan and e.errno == errno.EOPNOTSUPP:
            raise CNIError(
                Code.KERNEL,
                f"vlan {vlan} needs VLAN filtering on bridge {name}, which this kernel does not support "
                "(CONFIG_BRIDGE_VLAN_FILTERING)",
            ) from None
        raise


def _create_bridge(sock: Socket, name: str, mtu: int | None, vlan_filtering: bool) -> None:
    data: list[tuple[str, object]] = [("IFLA_BR_STP_STATE", 0)]
    if vlan_filtering:
        data.append(("IFLA_BR_VLAN_FILTERING", 1))
    attrs: list[tuple[str, object]] = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", {"attrs": data})]}))
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["attrs"] = attrs
    sock.request(msg, netlink.RTM_NEWLINK, netlink.NLM_F_CREATE | netlink.NLM_F_EXCL)


def _set_bridge_data(sock: Socket, index: int, data: list[tuple[str, object]]) -> None:
    info = {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", {"attrs": data})]}
    links.set_attrs(sock, index, [("IFLA_LINKINFO", info)])


def _vlan_filtering(sock: Socket, index: int) -> bool:
    data = links.info(links.message(sock, index=index), "IFLA_INFO_DATA")
    return bool(data.get_attr("IFLA_BR_VLAN_FILTERING")) if data is not None else False


def _ensure_gateway_addresses(att: Attachment, bridge: Link) -> None:
    """Each gateway on the bridge; a different address in an overlapping subnet is an error unless forceAddress.

    Addresses of subnets that do not overlap stay (several networks may share
    one bridge); IPv6 link-local addresses are the kernel's own and ignored.
    """
    have = [a for a, _ in addresses.on_link(att.host, bridge.index) if a.ip not in _LINK_LOCAL_V6]
    for want in _gateway_addresses(att):
        if want in have:
            continue
        clashing = [a for a in have if a.version == want.version and a.network.overlaps(want.network)]
        for old in clashing:
            if not att.conf.bridge.force_address:
                raise CNIError(
                    Code.INVALID_CONFIG,
                    f'bridge "{bridge.name}" already has address {old}, different from gateway {want} '
                    "(set forceAddress to replace it)",
                )
            log.get().warning("forceAddress: replacing %s on bridge %s with %s", old, bridge.name, want)
            with contextlib.suppress(NetlinkError):
                addresses.delete(att.host, bridge.index, old)
            have.remove(old)
        addresses.add(att.host, bridge.index, want, prefix_route=True, exist_ok=True)
        have.append(want)
    procsys.enable_forwarding({a.version for a in _gateway_addresses(att)})


def _attach_port(att: Attachment, bridge: Link) -> Link:
    """The host veth made a port of `bridge`; the port as the kernel shows it then."""
    conf = att.conf.bridge
    port = att.host_veth
    links.set_attrs(att.host, port.index, [("IFLA_MASTER", bridge.index)])
    if conf.hairpin:
        _set_port_data(att.host, port.index, [("IFLA_BRPORT_MODE", 1)])
    if conf.vlan:
        # The pod's frames enter untagged into `vlan` and leave untagged; the
        # port leaves the default VLAN so it sees no other pod's traffic
        # (unless `vlan` is the default VLAN: deleting it would undo the above).
        _port_vlan(att.host, port.index, conf.vlan, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED, netlink.RTM_SETLINK)
        if conf.vlan != DEFAULT_VLAN:
            with contextlib.suppress(NetlinkError):
                _port_vlan(att.host, port.index, DEFAULT_VLAN, 0, netlink.RTM_DELLINK)
    return links.get(att.host, index=port.index) or port


def _set_port_data(sock: Socket, index: int, data: list[tuple[str, object]]) -> None:
    info = {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", {"attrs": data})]}
    links.set_attrs(sock, index, [("IFLA_LINKINFO", info)])


def _port_vlan(sock: Socket, index: int, vid: int, flags: int, msg_type: int) -> None:
    msg = ifinfmsg()
    msg["family"] = AF_BRIDGE
    msg["index"] = index
    msg["attrs"] = [("IFLA_AF_SPEC", {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid})]})]
    sock.request(msg, msg_type)


@dataclasses.dataclass(frozen=True)
class Port:
    """A bridge port's STP state and hairpin flag."""

    state: int
    hairpin: bool


def port_info(sock: Socket, index: int) -> Port | None:
    """Bridge-port state and hairpin of a link, None if it is not a bridge port."""
    m = links.message(sock, index=index)
    if links.info(m, "IFLA_INFO_SLAVE_KIND") != "bridge":
        return None
    data = links.info(m, "IFLA_INFO_SLAVE_DATA")
    if data is None:
        return None
    return Port(state=data.get_attr("IFLA_BRPORT_STATE") or 0, hairpin=bool(data.get_attr("IFLA_BRPORT_MODE")))


def withdraw(att: Attachment, gone: Sequence[IPConfig]) -> None:
    """Nothing: the host side holds nothing per pod address (the bridge's gateway addresses are shared)."""


def settle(att: Attachment) -> None:
    """Wait briefly for the pod's bridge port to forward, so the first announcement is not dropped.

    With STP off the port forwards as soon as both veth ends are up; a bridge
    someone runs with STP takes seconds: then we go on, with a warning.
    """
    index = att.host_veth.index
    deadline = time.monotonic() + FORWARDING_WAIT_S
    delay = 0.005
    while True:
        port = port_info(att.host, index)
        if port is not None and port.state == BR_STATE_FORWARDING:
            return
        if time.monotonic() >= deadline:
            state_ = port.state if port is not None else "not a port"
            log.get().warning(
                "bridge port %s is not forwarding after %.1fs (state %s)", att.host_name, FORWARDING_WAIT_S, state_
            )
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# ------------------------------------------------------------------ pod side
def setup_pod(att: Attachment) -> None:
    """Addresses with their subnet routes, link up, then the lease's routes via the gateway."""
    pod, index, lease = att.pod_socket, att.pod_interface.index, att.leased
    for ip in lease.ips:
        addresses.add(pod, index, ip.address)
    links.set_up(pod, index)
    routes.add_lease_routes(pod, index, lease.routes, result.gateways(lease.ips), point_to_point=False)


# -------------------------------------------------------------------- result
def interfaces(att: Attachment) -> tuple[tuple[Interface, ...], int]:
    """[bridge, host veth, pod interface] and the index of the pod interface."""
    made = att.linked
    bridge = made.bridge or links.get(att.host, name=att.conf.bridge.name)
    assert bridge is not None
    return (
        Interface(name=bridge.name, mac=bridge.mac),
        Interface(name=att.host_name, mac=made.host.mac),
        Interface(name=att.req.ifname, mac=made.pod.mac, sandbox=att.req.netns, mtu=made.pod.mtu),
    ), 2


# --------------------------------------------------------------------- CHECK
def observe(att: Attachment, pod: Link, pod_index: int) -> list[str]:
    """What differs on the host side from what create and setup_host made (for CHECK)."""
    conf = att.conf.bridge
    name = conf.name
    # prevResult lists the bridge too: it is not the host veth.
    problems, found = veth.observe(att, pod, pod_index, not_host=name)
    if found is None:
        return problems
    att = dataclasses.replace(att, links=found)
    bridge = links.get(att.host, name=name)
    if bridge is None:
        return [*problems, f"bridge {name} is missing"]
    if bridge.kind != "bridge":
        return [*problems, f"{name} is a {bridge.kind or 'plain'} link, not a bridge"]
    prev = att.lease
    listed = [i for i in (prev.interfaces if prev else ()) if i.name == name and not i.sandbox]
    if listed and listed[0].mac and listed[0].mac.lower() != bridge.mac:
        problems.append(f"bridge {name} has MAC {bridge.mac}, expected {listed[0].mac.lower()}")
    if bool(bridge.flags & links.IFF_PROMISC) != conf.promisc:
        problems.append(
            f"bridge {name} promiscuous mode is {_onoff(bridge.flags & links.IFF_PROMISC)}, "
            f"config says {_onoff(conf.promisc)}"
        )
    if not bridge.up:
        problems.append(f"bridge {name} is down")
    host = att.host_veth
    if host.master != bridge.index:
        problems.append(f"host veth {host.name} is not a port of bridge {name}")
    else:
        port = port_info(att.host, host.index)
        if port is not None and port.hairpin != conf.hairpin:
            problems.append(f"hairpin mode of {host.name} is {_onoff(port.hairpin)}, config says {_onoff(conf.hairpin)}")
    if conf.is_gateway:
        have = {a for a, _ in addresses.on_link(att.host, bridge.index)}
        for want in _gateway_addresses(att):
            if want not in have:
                problems.append(f"bridge {name} lacks gateway address {want}")
    return problems


def _onoff(flag: object) -> str:
    return "on" if flag else "off"
