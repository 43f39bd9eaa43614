"""Network config: stdin bytes -> JSON -> schema -> a frozen `NetConf`.

Decoding failures are code 6, an unsupported cniVersion code 1, schema
violations code 7 (unknown fields code 2). The bytes themselves are kept:
delegated plugins get the config verbatim, as the spec asks.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Callable, Mapping
from typing import Any

from . import result, schema, versions
from .errors import CNIError, Code
from .request import Request

DEFAULT_RUNTIME_DIR = "/run/nsveth"
DEFAULT_BRIDGE = "nsveth0"

# Checks a decoded config (its bytes and runtimeDir beside it) against schema.json, raising CNIError.
Validate = Callable[[dict[str, Any], bytes, object], None]


@dataclasses.dataclass(frozen=True)
class Advertise:
    """Unsolicited ARP / NA rounds after ADD."""

    count: int = 3
    interval_ms: int = 1000


@dataclasses.dataclass(frozen=True)
class BridgeConf:
    """Bridge-mode settings."""

    name: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    hairpin: bool = False
    promisc: bool = False
    vlan: int = 0


@dataclasses.dataclass(frozen=True)
class NetConf:
    """The parsed network config; `raw` is passed verbatim to delegates."""

    raw: bytes
    doc: Mapping[str, Any]
    cni_version: str
    name: str
    ipam_type: str
    mode: str = "ptp"
    mtu: int | None = None
    mac: str | None = None
    dns: result.DNS = result.DNS()
    ip_masq: bool = False
    ip_masq_backend: str | None = None
    non_masquerade: tuple[result.IPNetwork, ...] = ()  # destinations that keep the pod source address
    bridge: BridgeConf = BridgeConf()
    sysctl: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the config's own
    args_sysctl: Mapping[str, str] = dataclasses.field(default_factory=dict)  # args.cni.sysctl: a pod author's (sysctl.plan)
    sysctl_allowlist: str | None = None
    advertise: Advertise = Advertise()
    log_file: str | None = None
    log_level: str = "warning"
    runtime_dir: str = DEFAULT_RUNTIME_DIR
    prev_result: result.Result | None = None
    valid_attachments: tuple[tuple[str, str], ...] | None = None
    mac_from_args: bool = False
    warnings: tuple[str, ...] = ()  # logged by the command once its logger exists


def decode(raw: bytes) -> dict[str, Any]:
    """JSON object from stdin; duplicate keys are refused (their meaning is ambiguous)."""
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKey as e:
        raise CNIError(Code.INVALID_CONFIG, f"duplicate key {e.args[0]!r} in network config") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CNIError(Code.DECODE_FAILURE, f"error decoding network config: {e}") from None
    if not isinstance(doc, dict):
        raise CNIError(Code.DECODE_FAILURE, "error decoding network config: not a JSON object")
    return doc


def version_of(doc: Mapping[str, Any]) -> str:
    """cniVersion, checked to be supported (a missing one means 0.1.0, as in libcni)."""
    version = doc.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise CNIError(Code.INVALID_CONFIG, "invalid network config: cniVersion must be a string")
    versions.require_supported(version)
    return version


def schema_only(doc: dict[str, Any], raw: bytes, runtime_dir: object) -> None:
    """The schema check with nothing remembered (the plugin's shell passes validation_cache.validate)."""
    schema.validate(doc)


def load(raw: bytes, req: Request, validate: Validate = schema_only) -> NetConf:
    doc = decode(raw)
    version = version_of(doc)
    versions.require_command(req.command, version)
    validate(doc, raw, doc.get("runtimeDir", DEFAULT_RUNTIME_DIR))
    check_mode_fields(doc)
    args_cni = (doc.get("args") or {}).get("cni") or {}
    runtime = doc.get("runtimeConfig") or {}
    prev = doc.get("prevResult")
    warnings: list[str] = []
    return NetConf(
        raw=raw,
        doc=doc,
        cni_version=version,
        name=doc["name"],
        ipam_type=doc["ipam"]["type"],
        mode=doc.get("mode", "ptp"),
        mtu=doc.get("mtu"),
        mac=_mac(*_mac_sources(doc, req, args_cni, warnings), runtime.get("mac")),
        dns=result.from_wire({"dns": doc["dns"]}, versions.CURRENT, "dns").dns if "dns" in doc else result.DNS(),
        ip_masq=doc.get("ipMasq", False),
        ip_masq_backend=doc.get("ipMasqBackend"),
        non_masquerade=_non_masquerade(doc),
        bridge=_bridge(doc),
        sysctl=doc.get("sysctl") or {},
        args_sysctl=args_cni.get("sysctl") or {},
        sysctl_allowlist=doc.get("sysctlAllowlist"),
        advertise=Advertise(**_renamed(doc.get("advertise", {}), {"count": "count", "intervalMs": "interval_ms"})),
        log_file=doc.get("logFile"),
        log_level=doc.get("logLevel", "warning"),
        runtime_dir=doc.get("runtimeDir", DEFAULT_RUNTIME_DIR),
        prev_result=_prev_result(prev, version, req.command),
        valid_attachments=_attachments(doc),
        mac_from_args=doc.get("macFromArgs", False),
        warnings=tuple(warnings),
    )


def _mac_sources(
    doc: Mapping[str, Any], req: Request, args_cni: Mapping[str, Any], warnings: list[str]
) -> tuple[str | None, str | None]:
    """CNI_ARGS MAC= and args.cni.mac, when the config lets them be used.

    Both may come from a pod author (Multus copies a pod annotation into
    args.cni; CNI_ARGS is assembled from the same request), and a MAC of their
    choice can take over another pod's bridge FDB entry and neighbour caches.
    So they count only with "macFromArgs": true; runtimeConfig.mac (the `mac`
    capability, which the runtime fills) needs no opt-in. Without it,
    args.cni.mac is refused (code 7): it is addressed to this plugin, and a
    silently different MAC would surprise the one who asked. CNI_ARGS MAC=
    with IgnoreUnknown is only ignored, with a warning: IgnoreUnknown says
    the keys are shared by the whole chain, and the reference `tuning` plugin
    later in it reads MAC= too. Without IgnoreUnknown it is refused like
    args.cni.mac. Only ADD and CHECK use the MAC: DEL and GC must clean up
    whatever the request holds.
    """
    cni_args, args_mac = req.args.get("MAC") or None, args_cni.get("mac") or None
    if doc.get("macFromArgs", False) or req.command not in ("ADD", "CHECK"):
        return cni_args, args_mac
    if args_mac is not None:
        raise CNIError(
            Code.INVALID_CONFIG,
            'args.cni.mac is set but the network config does not set "macFromArgs": true'
            " (args may come from a pod author; runtimeConfig.mac, the mac capability, needs no opt-in)",
        )
    if cni_args is not None:
        if req.args.get("IgnoreUnknown", "").lower() in ("1", "true"):
            warnings.append('CNI_ARGS MAC= ignored: the network config does not set "macFromArgs": true')
        else:
            raise CNIError(
                Code.INVALID_CONFIG,
                'CNI_ARGS MAC= is set but the network config does not set "macFromArgs": true'
                " (CNI_ARGS may carry a pod author's values; runtimeConfig.mac, the mac capability, needs no opt-in)",
            )
    return None, None


def _prev_result(prev: Any, version: str, command: str) -> result.Result | None:
    if prev is None:
        return None
    try:
        return result.from_wire(prev, version, "prevResult")
    except CNIError:
        if command == "DEL":
            return None  # DEL never uses it, and must clean up whatever the runtime cached
        raise


def _mac(*candidates: str | None) -> str | None:
    """Later sources win: CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac."""
    chosen = None
    for c in candidates:
        if c:
            chosen = c
    if chosen is None:
        return None
    mac = chosen.replace("-", ":").lower()
    octets = mac.split(":")
    if len(octets) != 6 or not all(len(o) == 2 and all(ch in "0123456789abcdef" for ch in o) for o in octets):
        raise CNIError(Code.INVALID_CONFIG, f"invalid MAC address {chosen!r}")
    if int(octets[0], 16) & 1:
        raise CNIError(Code.INVALID_CONFIG, f"MAC address {chosen!r} is a multicast address")
    if mac == "00:00:00:00:00:00":
        raise CNIError(Code.INVALID_CONFIG, "MAC address 00:00:00:00:00:00 is not usable")
    return mac


# The config fields of bridge mode, by their BridgeConf names.
_BRIDGE_FIELDS = {
    "bridge": "name",
    "isGateway": "is_gateway",
    "isDefaultGateway": "is_default_gateway",
    "forceAddress": "force_address",
    "hairpinMode": "hairpin",
    "promiscMode": "promisc",
    "vlan": "vlan",
}


def _bridge(doc: Mapping[str, Any]) -> BridgeConf:
    conf = BridgeConf(**_renamed(doc, _BRIDGE_FIELDS))
    # The schema's maxLength counts characters; the kernel's limit is 15 bytes.
    if len(conf.name.encode()) > 15:
        raise CNIError(Code.INVALID_CONFIG, f"invalid network config: bridge: {conf.name!r} is longer than 15 bytes")
    if conf.is_default_gateway and not conf.is_gateway:
        conf = dataclasses.replace(conf, is_gateway=True)  # isDefaultGateway implies isGateway
    return conf


def check_mode_fields(doc: Mapping[str, Any]) -> None:
    """Field combinations the schema cannot name well: bridge-only fields
    outside bridge mode (code 2), hairpin with promisc, and a VLAN with a
    gateway on the bridge (code 7).

    schema.json holds each field's type and range; these rules relate fields
    to each other. As schema conditionals (if/then at the top level) a schema
    could only answer code 7 for what is code 2 here, its messages would not
    say which rule, and the validation cache would lose its prevResult
    shortcut (it trusts only plain top-level keywords: validation_cache._subject).
    """
    mode = doc.get("mode", "ptp")
    if mode != "bridge":
        found = [k for k in _BRIDGE_FIELDS if k in doc]
        if found:
            raise CNIError(
                Code.UNSUPPORTED_FIELD,
                f"field(s) {', '.join(found)} only apply to \"mode\": \"bridge\" (mode is {mode!r})",
                "; ".join(f"{k}={json.dumps(doc[k])}" for k in found),
            )
        return
    if doc.get("hairpinMode") and doc.get("promiscMode"):
        raise CNIError(
            Code.INVALID_CONFIG, "hairpinMode and promiscMode are mutually exclusive: set at most one of them to true"
        )
    if doc.get("vlan") and (doc.get("isGateway") or doc.get("isDefaultGateway")):
        raise CNIError(
            Code.INVALID_CONFIG,
            f"vlan {doc['vlan']} with isGateway/isDefaultGateway is not supported: the gateway would sit on the "
            "bridge's untagged VLAN, unreachable from the pod's VLAN",
        )


def _non_masquerade(doc: Mapping[str, Any]) -> tuple[result.IPNetwork, ...]:
    """nonMasqueradeCIDRs as networks: only with "ipMasq": true (code 2, as
    bridge-only fields outside bridge mode), each a CIDR without host bits (code 7).

    schema.json says they are strings; the CIDR rules stay here: a schema
    pattern could say "looks like a CIDR" but not "no host bits", and its
    message would quote the regex instead of naming what is wrong (and the
    network meant)."""
    cidrs = doc.get("nonMasqueradeCIDRs")
    if cidrs is None:
        return ()
    if doc.get("ipMasq") is not True:
        raise CNIError(
            Code.UNSUPPORTED_FIELD,
            'field nonMasqueradeCIDRs only applies with "ipMasq": true',
            f"nonMasqueradeCIDRs={json.dumps(cidrs)}",
        )
    out = []
    for i, text in enumerate(cidrs):
        problem = None
        try:
            given = ipaddress.ip_interface(text)
        except ValueError:
            problem = "is not a CIDR"
        else:
            if "/" not in text:
                problem = "has no prefix length"
            elif given.ip != given.network.network_address:
                problem = f"has host bits set (the network is {given.network})"
        if problem:
            raise CNIError(Code.INVALID_CONFIG, f"invalid network config: nonMasqueradeCIDRs[{i}]: {text!r} {problem}")
        out.append(given.network)
    return tuple(out)


def _renamed(obj: Mapping[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {attr: obj[wire] for wire, attr in names.items() if wire in obj}


def _attachments(doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    # libcni sends both names (cni#1101: the spec first used the wrong one).
    # None: neither key (GC refuses that); null: a Go nil slice, i.e. no valid attachment.
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        if key in doc:
            return tuple((a["containerID"], a["ifname"]) for a in doc[key] or ())
    return None


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
