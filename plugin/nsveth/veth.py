"""The veth pair every wiring gives a pod: made with its pod end directly in the pod netns, removed by its host end."""

from __future__ import annotations

import os
from typing import Any, Final

from . import links, log, netns, procsys, timing
from .attachment import Attachment, Links, host_ifname
from .errors import CNIError, Code, NetlinkError, kernel
from .links import Link
from .netlink import Socket
from .request import Request
from .result import Result

POD_KIND: Final = "veth"  # the pod interface is a veth, whichever wiring uses the pair


def create(att: Attachment) -> Links:
    """The pair, pod end named CNI_IFNAME created directly in the pod netns; host end up, never taking RAs."""
    conf = att.conf
    # A leftover of this same attachment (a crashed ADD whose DEL never came)
    # holds the deterministic name: replace it rather than fail.
    if rollback(att):
        log.get().info("replaced stale host veth %s", att.host_name)
    try:
        links.create_veth(att.host, att.host_name, att.req.ifname, att.pod_netns_fd, conf.mtu, conf.mac)
    except NetlinkError as e:
        raise CNIError(Code.KERNEL, f"failed to create veth pair {att.host_name}/{att.req.ifname}: {e.strerror}") from None
    host = links.get(att.host, name=att.host_name)
    pod = links.get(att.pod_socket, name=att.req.ifname)
    if host is None or pod is None:
        raise CNIError(Code.KERNEL, f"veth pair {att.host_name}/{att.req.ifname} vanished after creation")
    kernel(f"bring up {att.host_name}", links.set_up, att.host, host.index)
    timing.mark("veth")
    kernel(f"disable accept_ra on {att.host_name}", procsys.no_accept_ra, att.host_name)
    return Links(host=host, pod=pod)


def rollback(att: Attachment) -> bool:
    """Remove the pair by its host end, if there is one (the pod end dies with it); whether there was."""
    return kernel(f"remove host veth {att.host_name}", links.delete, att.host, att.host_name)


def delete(req: Request, record: dict[str, Any]) -> None:
    """Remove the pair by its host end; without one, the pod end only in the netns ADD recorded."""
    name = host_ifname(req.container_id, req.ifname)
    with Socket() as host:
        try:
            if links.delete(host, name):
                return  # the pod end died with it
        except NetlinkError as e:
            raise CNIError(Code.KERNEL, f"failed to delete host veth {name}: {e.strerror}") from None
    # No host end: a pod interface may still be there (its peer moved away or
    # renamed by hand). It is deleted only from the netns ADD recorded: without
    # a record nothing proves an interface named CNI_IFNAME is this
    # attachment's (a veth's peer dies with it, so with no host veth left there
    # is no peer to match either), and a stale path may name any netns.
    if not req.netns:
        return
    fd = netns.open_recorded(req.netns, record, f"pod interface {req.ifname} left alone")
    if fd is None:
        return  # the pod is gone (its interfaces with it), or the path names another netns
    try:
        with netns.entered(fd):
            pod = Socket()
        with pod:
            link = links.get(pod, name=req.ifname)
            if link is not None and link.kind == "veth":
                links.delete(pod, req.ifname)
    except NetlinkError as e:
        raise CNIError(Code.KERNEL, f"failed to delete {req.ifname} in {req.netns}: {e.strerror}") from None
    finally:
        os.close(fd)


def observe(att: Attachment, pod: Link, pod_index: int, not_host: str | None = None) -> tuple[list[str], Links | None]:
    """CHECK of the pair (see `compare`); the links when the host end is there too."""
    host = links.get(att.host, name=att.host_name)
    return compare(att.leased, pod_index, pod, host, not_host), (Links(host=host, pod=pod) if host is not None else None)


def compare(prev: Result, pod_index: int, pod: Link, host: Link | None, not_host: str | None = None) -> list[str]:
    """The host veth against prevResult (pure): there, named as listed, the pod interface's peer, up.

    `not_host`: a host-side interface prevResult lists that is not the veth
    (bridge mode: the bridge).
    """
    host_names = [i.name for n, i in enumerate(prev.interfaces) if n != pod_index and not i.sandbox and i.name != not_host]
    if host is None:
        return [f"host veth {host_names[0] if host_names else ''} is missing".replace("  ", " ")]
    problems = []
    if host_names and host.name not in host_names:
        problems.append(f"host veth is {host.name}, prevResult lists {host_names}")
    if host.kind != POD_KIND or host.peer_index != pod.index or pod.peer_index != host.index:
        problems.append(f"host veth {host.name} is not the peer of {pod.name}")
    if not host.up:
        problems.append(f"host veth {host.name} is down")
    return problems
