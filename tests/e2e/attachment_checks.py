"""Assertions on the kernel and file state an attachment should (not) leave behind."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import cnienv
import support
from cnienv import CniEnv

BUSYBOX = str(cnienv.BUSYBOX)


def ping(ns: str, addr: str) -> None:
    """One echo request from inside netns ns to addr (an address inside our own netns)."""
    support.run(cnienv.in_ns(ns, BUSYBOX, "ping", "-c", "1", "-W", "3", addr))


def _norm_dst(dst: str) -> str:
    net = ipaddress.ip_network(dst, strict=False)
    if net.prefixlen == 0:
        return "default"
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def assert_attached(env: CniEnv, conf: dict[str, Any], result: dict[str, Any], netns: str,
                    ifname: str = "eth0") -> dict[str, Any]:
    """The pod side, host side, lease and cache match the ADD result. Returns facts for later checks."""
    ns = netns.rsplit("/", 1)[-1]
    idx, iface = cnienv.pod_iface(result, ifname, netns)
    [link] = support.ip_json(ns, "-d", "link", "show", "dev", ifname)
    assert link["linkinfo"]["info_kind"] == "veth", link
    assert "UP" in link["flags"], link
    assert link["address"] == iface["mac"].lower(), (link["address"], iface)
    main = cnienv.main_plugin(conf)
    if "mtu" in main:
        assert link["mtu"] == main["mtu"], (link["mtu"], main["mtu"])

    # Addresses: exactly those of the result that belong to this interface.
    want = {ip["address"] for ip in result["ips"] if ip.get("interface", idx) == idx}
    assert want, result
    have = cnienv.addr_set(ns, ifname)
    assert {str(ipaddress.ip_interface(a)) for a in want} == have, (want, have)

    # Routes: every route of the result is in the pod's main table.
    have_dsts = cnienv.route_dsts(ns, "-4") | cnienv.route_dsts(ns, "-6")
    for r in result.get("routes", []):
        assert _norm_dst(r["dst"]) in have_dsts, (r, have_dsts)

    # Sysctls the config asks for, read back in the pod netns.
    for key, value in (main.get("sysctl") or {}).items():
        assert cnienv.read_sysctl(ns, key, ifname) == " ".join(str(value).split()), key

    # Host side: one veth per attachment, connectivity both ways.
    # (Chained plugins may add host-side interfaces of their own, e.g. bandwidth's ifb.)
    veths = {v["ifname"]: v for v in env.host_veths()}
    host_names = {h["name"] for h in cnienv.host_ifaces(result)} & set(veths)
    assert len(host_names) == 1, (result["interfaces"], list(veths))
    container_ips = [ipaddress.ip_interface(a).ip for a in want]
    bridge_mode = main.get("mode") == "bridge"
    if bridge_mode:
        # The host veth is a port of the bridge the result names.
        [host_name] = host_names
        master = veths[host_name].get("master")
        assert master and master in {h["name"] for h in cnienv.host_ifaces(result)}, veths[host_name]
        [br] = support.ip_json(env.host_ns, "-d", "link", "show", "dev", master)
        assert br["linkinfo"]["info_kind"] == "bridge", br
    if not bridge_mode or main.get("isGateway") or main.get("isDefaultGateway"):
        # L3: the host answers as the gateway and reaches the pod. (A pure L2 bridge has no
        # address on the host, so there is nobody to ping.)
        for ip in result["ips"]:
            if ip.get("gateway"):
                ping(ns, ip["gateway"])
        for cip in container_ips:
            ping(env.host_ns, str(cip))

    # IPAM lease and libcni cache.
    cid = env.container_id(netns)
    net = conf["name"]
    leases = env.leases(net)
    for cip in container_ips:
        assert str(cip) in leases, (cip, leases)
        assert leases[str(cip)].split()[0] == cid, leases[str(cip)]
    cache = env.cache_file(net, cid, ifname)
    assert cache.is_file(), cache
    cached = json.loads(cache.read_text())
    assert cached["kind"] == "cniCacheV1" and cached["containerId"] == cid, cached
    assert cached["result"]["ips"] == result["ips"], cached
    if cnienv.PLUGIN == "nsveth":
        assert f"{cid}:{ifname}.json" in env.records(net), env.records(net)
    return {"cid": cid, "ips": [str(c) for c in container_ips], "host_veths": sorted(host_names)}


def assert_detached(env: CniEnv, conf: dict[str, Any], netns: str | None, facts: dict[str, Any],
                    ifname: str = "eth0") -> None:
    """Nothing of the attachment remains: pod iface, host veth, lease, cache entry."""
    if netns:
        ns = netns.rsplit("/", 1)[-1]
        names = [link["ifname"] for link in cnienv.links(ns)]
        assert ifname not in names, names
    left = [v["ifname"] for v in env.host_veths()]
    assert not set(facts["host_veths"]) & set(left), left
    leases = env.leases(conf["name"])
    assert not set(facts["ips"]) & set(leases), leases
    assert not any(v.split()[0] == facts["cid"] for v in leases.values()), leases
    assert not env.cache_file(conf["name"], facts["cid"], ifname).exists()
    assert not [r for r in env.records(conf["name"]) if r.startswith(facts["cid"])], env.records(conf["name"])
    host_routes = cnienv.routes(env.host_ns, "-4") + cnienv.routes(env.host_ns, "-6")
    stale = [r for r in host_routes if r.get("dst") in facts["ips"] or r.get("dev") in facts["host_veths"]]
    assert not stale, stale


# Lines iptables-save prints for a table or built-in chain that merely came into existence.
_BOOKKEEPING = re.compile(r"^(\*\w+|COMMIT|:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT)$")


_IPTABLES_NFT_TABLES = {"filter", "nat", "mangle", "raw", "security"}


def _nft_tables(lines: list[str]) -> dict[str, list[str]]:
    """Top-level nft tables -> body lines; empty tables and iptables-nft's own tables left out
    (the iptables-save comparison covers those)."""
    tables: dict[str, list[str]] = {}
    current: str | None = None
    depth = 0
    for line in lines:
        if depth == 0 and line.startswith("table ") and line.endswith("{"):
            current, depth = line[len("table "):-1].strip(), 1
            tables[current] = []
            continue
        depth += line.count("{") - line.count("}")
        if depth == 0:
            current = None
        elif current is not None:
            tables[current].append(line)
    return {name: body for name, body in tables.items()
            if body and not (name.split()[0] in ("ip", "ip6") and name.split()[-1] in _IPTABLES_NFT_TABLES)}


# The firewall plugin's shared chains and the jumps into them, which it never removes.
_FIREWALL_SHARED = re.compile(r"^(:CNI-(FORWARD|ADMIN) |-A (FORWARD|CNI-FORWARD) .*-j CNI-(FORWARD|ADMIN)$)")


def assert_no_new_rules(before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
    """No firewall rule is new. Tolerated: portmap's shared CNI-HOSTPORT-* chains and the firewall
    plugin's CNI-FORWARD/CNI-ADMIN chains (they never remove them; per-pod rules in them count),
    tables and built-in chains that merely exist, and empty nft tables."""
    for tool in ("iptables-save", "ip6tables-save"):
        new = [line for line in after[tool] if line not in before[tool] and "CNI-HOSTPORT-" not in line
               and not _BOOKKEEPING.match(line) and not _FIREWALL_SHARED.match(line)]
        assert not new, (tool, new)
    assert _nft_tables(after["nft"]) == _nft_tables(before["nft"]), after["nft"]


# --------------------------------------------------------------------------- inside a container

def container_expectations(conf: dict[str, Any]) -> dict[str, Any]:
    """What a container attached with conf should see on eth0, derived from the config alone."""
    main = cnienv.main_plugin(conf)
    ipam = main.get("ipam") or {}
    ranges = [r for rs in ipam.get("ranges", []) for r in rs]
    if "subnet" in ipam:
        ranges.append({"subnet": ipam["subnet"], **({"gateway": ipam["gateway"]} if "gateway" in ipam else {})})
    subnets = [ipaddress.ip_network(r["subnet"]) for r in ranges]
    bridge_mode = main.get("mode") == "bridge"
    l3 = not bridge_mode or bool(main.get("isGateway") or main.get("isDefaultGateway"))
    v4 = [r for r in ranges if ipaddress.ip_network(r["subnet"]).version == 4]
    gateway = None
    if l3 and v4:
        gateway = v4[0].get("gateway") or str(next(ipaddress.ip_network(v4[0]["subnet"]).hosts()))
    dsts = {r["dst"] for r in ipam.get("routes", [])}
    return {"subnets": subnets, "gateway": gateway, "mtu": main.get("mtu"),
            "default4": "0.0.0.0/0" in dsts or bool(main.get("isDefaultGateway")) and bool(v4),
            "outside": None}  # an address beyond the host the container must reach (set by the test)


def example_for_container(env: CniEnv, example: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """An example as shipped, written into the env's config dir, the host prepared for it (see
    cnienv.prepare_host), and what a container attached with it must see."""
    conf = cnienv.example_conflist(env, example)
    expect = container_expectations(conf)
    expect["outside"] = cnienv.prepare_host(env, conf)
    return conf, expect


def assert_container_gone(env: CniEnv, conf: dict[str, Any], fw_before: dict[str, list[str]]) -> None:
    """After the runtime removed the container: no host veth, lease, state record or new firewall rule is left."""
    assert env.host_veths() == []
    assert env.leases(conf["name"]) == {}
    assert env.records(conf["name"]) == []
    assert_no_new_rules(fw_before, cnienv.firewall_snapshot(env.host_ns))


INSIDE_SCRIPT = ("echo '--- addr'; ip addr show eth0; echo '--- route'; ip route; "
                 "{ping}echo '--- end'")


def inside_script(expect: dict[str, Any]) -> str:
    ping_cmd = f"ping -c 1 -W 3 {expect['gateway']} && echo PING-OK; " if expect["gateway"] else ""
    if expect["outside"]:
        ping_cmd += f"ping -c 1 -W 3 {expect['outside']} && echo OUTSIDE-OK; "
    return INSIDE_SCRIPT.format(ping=ping_cmd)


def assert_container_view(output: str, expect: dict[str, Any]) -> list[str]:
    """Checks the inside_script output; returns the container's global addresses."""
    addrs = re.findall(r"inet6? (\S+) .*scope global", output)
    assert addrs, output
    for a in addrs:
        iface = ipaddress.ip_interface(a)
        assert any(iface.ip in s for s in expect["subnets"]), (a, expect["subnets"], output)
    assert {ipaddress.ip_interface(a).version for a in addrs} == {s.version for s in expect["subnets"]}, output
    if expect["mtu"]:
        assert f"mtu {expect['mtu']}" in output, output
    if expect["default4"]:
        assert re.search(r"^default via \S+ dev eth0", output, re.M), output
    if expect["gateway"]:
        assert "PING-OK" in output, output
    if expect["outside"]:
        assert "OUTSIDE-OK" in output, ("no outbound access", output)
    return [str(ipaddress.ip_interface(a).ip) for a in addrs]
