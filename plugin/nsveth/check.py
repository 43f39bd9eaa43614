"""CHECK's comparison of prevResult against what the kernel shows (pure).

The shell (commands.py) gathers what the kernel shows; this module only
compares, so it names what it reads as protocols instead of importing the
netlink modules (links.Link and routes.Entry satisfy them).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from .config import NetConf
from .errors import CNIError, Code
from .result import IPAddress, IPInterface, IPNetwork, Result


class SeenLink(Protocol):
    """What CHECK reads of a link."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def mtu(self) -> int: ...
    @property
    def peer_index(self) -> int: ...
    @property
    def up(self) -> bool: ...


class SeenRoute(Protocol):
    """What CHECK reads of a route."""

    @property
    def dst(self) -> IPNetwork: ...
    @property
    def gw(self) -> IPAddress | None: ...


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the kernel shows of an attachment, gathered for CHECK."""

    pod_link: SeenLink | None
    host_link: SeenLink | None
    pod_addresses: tuple[IPInterface, ...]
    pod_routes: tuple[SeenRoute, ...]


def pod_interface_index(prev: Result, ifname: str, netns: str) -> int:
    """Index in prevResult.interfaces of the pod interface this CHECK is about."""
    for n, iface in enumerate(prev.interfaces):
        if iface.name == ifname and iface.sandbox:
            if iface.sandbox != netns:
                raise CNIError(
                    Code.CHECK_FAILED,
                    f"sandbox {iface.sandbox} of {ifname} in prevResult does not match CNI_NETNS {netns}",
                )
            return n
    raise CNIError(Code.CHECK_FAILED, f"prevResult lists no interface {ifname} in sandbox {netns}")


def compare(prev: Result, pod_index: int, conf: NetConf, seen: Observed) -> list[str]:
    """Every difference, each named; empty when all is as ADD left it."""
    expected = prev.interfaces[pod_index]
    pod = seen.pod_link
    if pod is None:
        return [f"interface {expected.name} is missing from the pod netns"]
    problems = []
    if pod.kind != "veth":
        problems.append(f"interface {pod.name} is a {pod.kind or 'non-veth'} link, expected veth")
    if expected.mac and pod.mac != expected.mac.lower():
        problems.append(f"interface {pod.name} has MAC {pod.mac}, expected {expected.mac.lower()}")
    if conf.mtu and pod.mtu != conf.mtu:
        problems.append(f"interface {pod.name} has MTU {pod.mtu}, expected {conf.mtu}")
    if not pod.up:
        problems.append(f"interface {pod.name} is down")
    for ip in prev.ips:
        if ip.interface == pod_index and ip.address not in seen.pod_addresses:
            problems.append(f"address {ip.address} is missing from {pod.name}")
    for r in prev.routes:
        # A route without a gateway matches on destination alone (no false
        # failures for IPAM routes that leave the gateway implicit).
        if not any(e.dst == r.dst and (r.gw is None or e.gw == r.gw) for e in seen.pod_routes):
            via = f" via {r.gw}" if r.gw else ""
            problems.append(f"route {r.dst}{via} is missing in the pod netns")
    host = seen.host_link
    bridge = conf.bridge.name if conf.mode == "bridge" else None
    host_names = [i.name for n, i in enumerate(prev.interfaces) if n != pod_index and not i.sandbox and i.name != bridge]
    if host is None:
        problems.append(f"host veth {host_names[0] if host_names else ''} is missing".replace("  ", " "))
    else:
        if host_names and host.name not in host_names:
            problems.append(f"host veth is {host.name}, prevResult lists {host_names}")
        if host.kind != "veth" or host.peer_index != pod.index or pod.peer_index != host.index:
            problems.append(f"host veth {host.name} is not the peer of {pod.name}")
        if not host.up:
            problems.append(f"host veth {host.name} is down")
    return problems
