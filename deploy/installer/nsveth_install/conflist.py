"""Render the node's conflist from the ConfigMap template.

The template is JSON. Node-specific values are filled in structurally, not by
text substitution: a JSON string that is exactly one of the placeholders below
is replaced by a JSON value, so a dual-stack node gets two host-local range
sets and two default routes, and the result is always valid JSON.

    "@nsveth:podCIDRRanges"  [[{"subnet": "<v4 CIDR>"}], [{"subnet": "<v6 CIDR>"}]]
    "@nsveth:defaultRoutes"  [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]  (per family)
    "@nsveth:podCIDR"        the first pod CIDR, as a string
    "@nsveth:clusterCIDRs"   ["<cluster CIDR>", ...], from the ConfigMap (for ipMasq's nonMasqueradeCIDRs)
    "@nsveth:nodeName"       the node's name, as a string
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import InstallError

PLACEHOLDER_PREFIX = "@nsveth:"
CIDR_PLACEHOLDERS = frozenset({"podCIDRRanges", "defaultRoutes", "podCIDR"})
CLUSTER_PLACEHOLDER = "clusterCIDRs"
PLUGIN_TYPE = "nsveth"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NodeFacts:
    """What the template may refer to; pod_cidrs is empty until it is needed."""

    node_name: str
    pod_cidrs: tuple[Network, ...]
    cluster_cidrs: tuple[Network, ...] = ()


def parse_pod_cidrs(values: list[str]) -> tuple[Network, ...]:
    """Validate pod CIDRs: network addresses only, at most one per IP family.

    Kubernetes assigns at most one CIDR per family (spec.podCIDRs); a second
    IPv4 range would have to go into the same host-local range set, which is a
    different network design, so it is rejected rather than guessed at.
    """
    nets: list[Network] = []
    for raw in (v.strip() for value in values for v in value.split(",")):
        if not raw:
            continue
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as e:
            raise InstallError(f"invalid pod CIDR {raw!r}: {e}") from e
        if any(n.version == net.version for n in nets):
            raise InstallError(f"more than one IPv{net.version} pod CIDR: {', '.join(values)}")
        nets.append(net)
    return tuple(nets)


def parse_cluster_cidrs(values: list[str]) -> tuple[Network, ...]:
    """The cluster's pod network(s): network addresses, any number per family
    (a cluster may grow its pod network by adding ranges)."""
    nets: list[Network] = []
    for raw in (v.strip() for value in values for v in value.replace("\n", ",").split(",")):
        if not raw or raw.startswith("#"):
            continue
        try:
            nets.append(ipaddress.ip_network(raw, strict=True))
        except ValueError as e:
            raise InstallError(f"invalid cluster CIDR {raw!r}: {e}") from e
    return tuple(nets)


def needs_cluster_cidr(template: Any) -> bool:
    return CLUSTER_PLACEHOLDER in placeholders(template)


def placeholders(template: Any) -> set[str]:
    """Names of all placeholders the template uses."""
    found: set[str] = set()

    def collect(s: str) -> str:
        found.add(s[len(PLACEHOLDER_PREFIX):])
        return s

    _map_strings(template, collect)
    return found


def needs_pod_cidr(template: Any) -> bool:
    return bool(placeholders(template) & CIDR_PLACEHOLDERS)


def load_template(data: bytes, origin: str) -> Any:
    try:
        template = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InstallError(f"conflist template {origin} is not valid JSON: {e}") from e
    unknown = placeholders(template) - CIDR_PLACEHOLDERS - {"nodeName", CLUSTER_PLACEHOLDER}
    if unknown:
        raise InstallError(
            f"conflist template {origin}: unknown placeholder(s) "
            + ", ".join(sorted(PLACEHOLDER_PREFIX + u for u in unknown))
        )
    return template


def render(template: Any, facts: NodeFacts) -> bytes:
    """The conflist bytes for this node; deterministic, so equal input = equal file."""
    if needs_pod_cidr(template) and not facts.pod_cidrs:
        raise InstallError("the conflist template needs the node's pod CIDR, but none is known")
    if needs_cluster_cidr(template) and not facts.cluster_cidrs:
        raise InstallError("the conflist template needs the cluster CIDR (@nsveth:clusterCIDRs), but none is "
                           "known: set clusterCIDRs in the nsveth-config ConfigMap or pass --cluster-cidr")
    values = {
        "podCIDRRanges": [[{"subnet": str(n)}] for n in facts.pod_cidrs],
        "defaultRoutes": [{"dst": "0.0.0.0/0" if n.version == 4 else "::/0"} for n in facts.pod_cidrs],
        "podCIDR": str(facts.pod_cidrs[0]) if facts.pod_cidrs else None,
        "nodeName": facts.node_name,
        CLUSTER_PLACEHOLDER: [str(n) for n in facts.cluster_cidrs],
    }
    rendered = _map_strings(template, lambda s: values[s[len(PLACEHOLDER_PREFIX):]])
    validate(rendered)
    return (json.dumps(rendered, indent=2) + "\n").encode()


def validate(conflist: Any) -> None:
    """The shape libcni needs, with nsveth first in the chain.

    nsveth must be first: it creates the pod's interface, and chained plugins
    such as portmap only act on the prevResult it produces.
    """
    if not isinstance(conflist, dict):
        raise InstallError("conflist must be a JSON object")
    for key in ("cniVersion", "name"):
        if not isinstance(conflist.get(key), str) or not conflist[key]:
            raise InstallError(f"conflist needs a non-empty string {key!r}")
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
        raise InstallError("conflist needs a non-empty 'plugins' list of objects")
    if plugins[0].get("type") != PLUGIN_TYPE:
        raise InstallError(f"the first plugin in the conflist must be type {PLUGIN_TYPE!r}, "
                           f"not {plugins[0].get('type')!r}")


def required_plugins(conflist_bytes: bytes) -> list[str]:
    """Executables the runtime will look up in the CNI bin dir for this conflist."""
    conflist = json.loads(conflist_bytes)
    names: list[str] = []
    for plugin in conflist["plugins"]:
        for name in (plugin.get("type"), (plugin.get("ipam") or {}).get("type")):
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def _map_strings(node: Any, fn: Callable[[str], Any]) -> Any:
    """Copy of a JSON value with each placeholder string replaced by fn(string)."""
    if isinstance(node, dict):
        return {k: _map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_map_strings(v, fn) for v in node]
    if isinstance(node, str) and node.startswith(PLACEHOLDER_PREFIX):
        return fn(node)
    return node
