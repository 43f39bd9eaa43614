"""CHECK's comparison of prevResult against what the kernel shows in the pod (pure).

The shell (commands.py) gathers what the kernel shows; this module only
compares, so it names what it reads as protocols instead of importing the
netlink modules (links.Link and routes.Entry satisfy them). The host side
differs by wiring: each wiring checks its own (`Wiring.observe`).
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
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def mac(self) -> str: ...
    @property
    def mtu(self) -> int: ...
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
    """What the kernel shows of an attachment in the pod netns, gathered for CHECK."""

    pod_link: SeenLink | None
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


def compare(prev: Result, pod_index: int, conf: NetConf, seen: Observed, pod_kind: str) -> list[str]:
    """Every difference in the pod, each named; empty when all is as ADD left it.
    `pod_kind`: the link kind the wiring makes the pod interface (veth)."""
    expected = prev.interfaces[pod_index]
    pod = seen.pod_link
    if pod is None:
        return [f"interface {expected.name} is missing from the pod netns"]
    problems = []
    if pod.kind != pod_kind:
        problems.append(f"interface {pod.name} is a {pod.kind or 'non-' + pod_kind} link, expected {pod_kind}")
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
    return problems
