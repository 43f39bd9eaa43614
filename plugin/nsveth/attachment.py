"""One pod attachment while a command works on it: names, namespaces, sockets, lease."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    # Annotations only: `host_ifname` is used without netlink (pyroute2) by
    # `nsveth inspect`; sysctl's import is start-up time only configs with sysctls need.
    from .config import NetConf
    from .links import Link
    from .netlink import Socket
    from .request import Request
    from .result import IPAddress, Result
    from .sysctl import Original

HOST_PREFIX = "nsv"

_T = TypeVar("_T")


def digest(container_id: str, ifname: str) -> str:
    """SHA-256(containerID NUL ifname) in hex: what names an attachment's host-side objects
    (veth, masquerade chains), deterministically, so DEL and GC find them without the pod netns."""
    return hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()


def host_ifname(container_id: str, ifname: str) -> str:
    """Host-side veth name: "nsv" + 12 hex digits of `digest`.

    15 bytes (the kernel's limit); 48 bits of hash, so two live attachments
    colliding needs about 16 million of them on one node.
    """
    return HOST_PREFIX + digest(container_id, ifname)[:12]


@dataclasses.dataclass(frozen=True)
class Links:
    """The links of an attachment, as the kernel showed them after the step that made or changed them."""

    host: Link  # the host side: the host veth
    pod: Link  # the pod interface
    bridge: Link | None = None  # bridge mode: the bridge the host veth is a port of


@dataclasses.dataclass(frozen=True)
class Attachment:
    """One pod attachment while a command works on it.

    Frozen: a step that learns something (the lease, the links, the sysctl
    values it replaced) returns it, and the command's story rebinds its
    attachment with `dataclasses.replace`.
    """

    req: Request
    conf: NetConf
    host: Socket  # netlink, host netns
    pod: Socket | None  # netlink, pod netns (None when the netns is gone)
    pod_fd: int | None
    host_name: str
    lease: Result | None = None
    links: Links | None = None
    sysctl_originals: tuple[Original, ...] = ()  # values ADD's sysctls replaced

    @property
    def gateways(self) -> dict[int, IPAddress]:
        """Gateway of the first address of each family (4 and 6) in the lease."""
        from .result import gateways

        return gateways(self.lease.ips) if self.lease else {}

    # The steps after IPAM and after the veth exists read these: each names
    # what a step before it must have set.
    @property
    def leased(self) -> Result:
        return _known(self.lease, "the lease")

    @property
    def pod_socket(self) -> Socket:
        return _known(self.pod, "the pod netns socket")

    @property
    def pod_netns_fd(self) -> int:
        return _known(self.pod_fd, "the pod netns")

    @property
    def linked(self) -> Links:
        return _known(self.links, "the links")

    @property
    def host_veth(self) -> Link:
        return self.linked.host

    @property
    def pod_interface(self) -> Link:
        return self.linked.pod


def _known(value: _T | None, what: str) -> _T:
    if value is None:
        raise RuntimeError(f"{what} is not known at this step")
    return value
