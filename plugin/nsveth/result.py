"""The one result model (spec 1.1.0) and its conversion to and from each wire version.

Results come in from IPAM plugins and `prevResult`, and go out on stdout; all
three pass through `from_wire`/`to_wire`, so a malformed result is caught at
the edge with a message that says where it came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import Any

from . import versions
from .errors import CNIError, Code

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class Interface:
    """An interface of a result."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None  # 1.1.0
    socket_path: str = ""  # 1.1.0
    pci_id: str = ""  # 1.1.0


@dataclasses.dataclass(frozen=True)
class IPConfig:
    """An address of a result."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None


@dataclasses.dataclass(frozen=True)
class Route:
    """A route of a result."""

    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None  # the rest: 1.1.0
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


@dataclasses.dataclass(frozen=True)
class DNS:
    """DNS settings of a result."""

    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclasses.dataclass(frozen=True)
class Result:
    """A CNI result, in the 1.1.0 model."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()


_ROUTE_EXTRAS = ("mtu", "advmss", "priority", "table", "scope")
_IFACE_EXTRAS = {"mtu": "mtu", "socketPath": "socket_path", "pciID": "pci_id"}


def to_wire(result: Result, version: str) -> dict[str, Any]:
    """The result as the JSON object of spec `version` (0.3.0 to 1.1.0)."""
    modern = versions.at_least(version, "1.0.0")
    extras = versions.at_least(version, "1.1.0")
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [_interface_out(i, extras) for i in result.interfaces]
    out["ips"] = [_ip_out(ip, modern) for ip in result.ips]
    if result.routes:
        out["routes"] = [_route_out(r, extras) for r in result.routes]
    out["dns"] = _dns_out(result.dns)
    return out


def _interface_out(i: Interface, extras: bool) -> dict[str, Any]:
    o: dict[str, Any] = {"name": i.name}
    if i.mac:
        o["mac"] = i.mac
    if i.sandbox:
        o["sandbox"] = i.sandbox
    if extras:
        for wire, attr in _IFACE_EXTRAS.items():
            value = getattr(i, attr)
            if value:
                o[wire] = value
    return o


def _ip_out(ip: IPConfig, modern: bool) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if not modern:
        o["version"] = str(ip.address.version)
    if ip.interface is not None:
        o["interface"] = ip.interface
    o["address"] = str(ip.address)
    if ip.gateway is not None:
        o["gateway"] = str(ip.gateway)
    return o


def _route_out(r: Route, extras: bool) -> dict[str, Any]:
    o: dict[str, Any] = {"dst": str(r.dst)}
    if r.gw is not None:
        o["gw"] = str(r.gw)
    if extras:
        for name in _ROUTE_EXTRAS:
            value = getattr(r, name)
            if value is not None:
                o[name] = value
    return o


def _dns_out(d: DNS) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if d.nameservers:
        o["nameservers"] = list(d.nameservers)
    if d.domain:
        o["domain"] = d.domain
    if d.search:
        o["search"] = list(d.search)
    if d.options:
        o["options"] = list(d.options)
    return o


def from_wire(obj: Any, version: str, origin: str, code: int = Code.INVALID_CONFIG) -> Result:
    """Parse a result of spec `version`; errors name `origin` (e.g. "prevResult")."""
    try:
        return _parse(obj, version)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise CNIError(code, f"invalid {origin}: {e}") from e


def _parse(obj: Any, version: str) -> Result:
    if not isinstance(obj, dict):
        raise TypeError("not a JSON object")
    if not versions.at_least(version, "0.3.0"):
        raise ValueError(f"result version {version} is not supported")
    interfaces = tuple(_interface_in(i, n) for n, i in enumerate(_list(obj, "interfaces")))
    ips = tuple(_ip_in(ip, n, version, len(interfaces)) for n, ip in enumerate(_list(obj, "ips")))
    routes = tuple(_route_in(r, n) for n, r in enumerate(_list(obj, "routes")))
    dns = obj.get("dns")
    return Result(interfaces, ips, routes, _dns_in({} if dns is None else dns))


def gateways(ips: Iterable[IPConfig]) -> dict[int, IPAddress]:
    """Gateway of the first address of each family (4 and 6) that has one."""
    out: dict[int, IPAddress] = {}
    for ip in ips:
        if ip.gateway is not None:
            out.setdefault(ip.address.version, ip.gateway)
    return out


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{key} must be a list")
    return value


def _interface_in(i: Any, n: int) -> Interface:
    if not isinstance(i, dict) or not isinstance(i.get("name"), str) or not i["name"]:
        raise ValueError(f"interfaces[{n}] needs a name")
    mtu = i.get("mtu")
    if mtu is not None and (type(mtu) is not int or mtu < 0):
        raise ValueError(f"interfaces[{n}].mtu must be a non-negative integer")
    return Interface(
        name=i["name"],
        mac=_str(i, "mac", f"interfaces[{n}]"),
        sandbox=_str(i, "sandbox", f"interfaces[{n}]"),
        mtu=mtu or None,
        socket_path=_str(i, "socketPath", f"interfaces[{n}]"),
        pci_id=_str(i, "pciID", f"interfaces[{n}]"),
    )


def _ip_in(ip: Any, n: int, version: str, n_interfaces: int) -> IPConfig:
    where = f"ips[{n}]"
    if not isinstance(ip, dict):
        raise TypeError(f"{where} must be an object")
    address = _located(ipaddress.ip_interface, _required_str(ip, "address", where), f"{where}.address")
    if "/" not in ip["address"]:
        raise ValueError(f"{where}.address {ip['address']!r} needs a prefix length")
    if not versions.at_least(version, "1.0.0"):
        family = ip.get("version")
        if family not in ("4", "6"):
            raise ValueError(f'{where}.version must be "4" or "6"')
        if int(family) != address.version:
            raise ValueError(f"{where}.version {family} does not match address {address}")
    gateway = _address_or_none(ip, "gateway", where)
    if gateway is not None and gateway.version != address.version:
        raise ValueError(f"{where}.gateway {gateway} is not the family of {address}")
    index = ip.get("interface")
    if index is not None:
        if type(index) is not int or not 0 <= index < max(n_interfaces, 1) or n_interfaces == 0:
            raise ValueError(f"{where}.interface {index!r} is not an index into interfaces")
    return IPConfig(address, gateway, index)


def _route_in(r: Any, n: int) -> Route:
    where = f"routes[{n}]"
    if not isinstance(r, dict):
        raise TypeError(f"{where} must be an object")
    dst = _located(lambda v: ipaddress.ip_network(v, strict=False), _required_str(r, "dst", where), f"{where}.dst")
    gw = _address_or_none(r, "gw", where)
    if gw is not None and gw.version != dst.version:
        raise ValueError(f"{where}.gw {gw} is not the family of {dst}")
    extras = {}
    for name in _ROUTE_EXTRAS:
        value = r.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f"{where}.{name} must be a non-negative integer")
        extras[name] = value
    return Route(dst, gw, **extras)


def _dns_in(d: Any) -> DNS:
    if not isinstance(d, dict):
        raise TypeError("dns must be an object")
    return DNS(
        nameservers=_strings(d, "nameservers"),
        domain=_str(d, "domain", "dns"),
        search=_strings(d, "search"),
        options=_strings(d, "options"),
    )


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{where}.{key} must be a string")
    return value


def _required_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key} is required")
    return value


def _strings(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise TypeError(f"dns.{key} must be a list of strings")
    return tuple(value)


def _address_or_none(obj: dict[str, Any], key: str, where: str) -> IPAddress | None:
    value = obj.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{where}.{key} must be a string")
    address: IPAddress = _located(ipaddress.ip_address, value, f"{where}.{key}")
    return address


def _located(parse: Any, value: str, where: str) -> Any:
    """`parse(value)`, with a ValueError that says where the bad value was."""
    try:
        return parse(value)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
