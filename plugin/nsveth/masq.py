"""IP masquerade of pod traffic leaving the pod subnet (ipMasq), in the host netns.

Every attachment owns its rules outright, named from (network, containerID,
ifname) alone, so DEL removes exactly that pod's rules with nothing but its
names: it works when the pod netns (and with it the pod's addresses) is
already gone, where the reference plugins leak their rules.

nftables (the default when `nft` exists): table `inet nsveth`, one NAT base
chain per attachment hooked at postrouting, named `<network>-<hash>`, holding
one rule per pod address:
    ip saddr <pod ip> ip daddr != { <pod subnet>, 224.0.0.0/4, <nonMasqueradeCIDRs> } masquerade
Adding and removing are each one atomic `nft` transaction; removal is
"add chain; flush chain; delete chain", which succeeds whether or not the
chain exists. GC finds leftover chains of a network by the name prefix.

iptables (fallback, or ipMasqBackend "iptables"): chain `NSV-<hash>` in the
nat table (the reference layout): `-d <subnet> -j ACCEPT`, `-d <CIDR> -j
ACCEPT` per nonMasqueradeCIDR of the family, `! -d 224.0.0.0/4 -j
MASQUERADE`, jumped to from POSTROUTING by `-s <pod ip>`; ip6tables for IPv6
(multicast ff00::/8).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any, cast

from . import attachment
from .errors import CNIError, Code
from .result import IPInterface, IPNetwork

NFT_TABLE = "nsveth"
NFT_FAMILY = "inet"
IPT_PREFIX = "NSV-"  # every iptables chain nsveth makes
NAT_PRIORITY_SRCNAT = 100
_MULTICAST = {4: ipaddress.ip_network("224.0.0.0/4"), 6: ipaddress.ip_network("ff00::/8")}
_SEARCH = "/usr/sbin:/sbin:/usr/bin:/bin"
_TIMEOUT_S = 30


def _which(tool: str, path: str) -> str | None:
    """`tool` in `path` (the PATH of the request's environment, not this process's: a warm
    server serves runtimes with different ones), then in the usual sbin and bin dirs."""
    return shutil.which(tool, path=f"{path}:{_SEARCH}" if path else _SEARCH)


def backend(requested: str | None, *, path: str) -> str:
    """The backend to use: the one asked for, else nftables when `nft` exists, else iptables."""
    if requested:
        return requested
    if _which("nft", path):
        return "nftables"
    if _which("iptables", path):
        return "iptables"
    raise CNIError(Code.KERNEL, "ipMasq needs nft or iptables, and neither is installed")


def nft_chain(network: str, container_id: str, ifname: str) -> str:
    return f"{network}-{attachment.digest(container_id, ifname)[:16]}"


def iptables_chain(network: str, container_id: str, ifname: str) -> str:
    """28 characters, iptables' limit for a chain name."""
    return IPT_PREFIX + hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()[:24]


def comment(network: str, container_id: str, ifname: str) -> str:
    """Human-readable owner of a rule (nft and iptables limit comments to 128 and 256 bytes)."""
    return f"nsveth {network} {container_id} {ifname}"[:127]


# -------------------------------------------------------------------- nftables
def _chain_ref(name: str) -> dict[str, Any]:
    return {"family": NFT_FAMILY, "table": NFT_TABLE, "name": name}


def _nat_chain(name: str) -> dict[str, Any]:
    return {**_chain_ref(name), "type": "nat", "hook": "postrouting", "prio": NAT_PRIORITY_SRCNAT, "policy": "accept"}


def nft_add_batch(
    network: str, container_id: str, ifname: str, ips: Iterable[IPInterface], keep: Iterable[IPNetwork] = ()
) -> dict[str, Any]:
    """The JSON transaction that (re)creates the attachment's chain with one rule per address (pure).

    Destinations in the pod subnet, multicast and `keep` (nonMasqueradeCIDRs)
    are not translated; the set is collapsed (overlapping prefixes merged),
    so any mix of CIDRs makes a valid interval set.
    """
    keep = list(keep)
    chain = nft_chain(network, container_id, ifname)
    cmds: list[dict[str, Any]] = [
        {"add": {"table": {"family": NFT_FAMILY, "name": NFT_TABLE}}},
        {"add": {"chain": _nat_chain(chain)}},
        {"flush": {"chain": _chain_ref(chain)}},
    ]
    for ip in ips:
        proto = "ip" if ip.version == 4 else "ip6"
        # All of ip's family: the cast only tells mypy so (collapse_addresses needs one family).
        nets = [ip.network, _MULTICAST[ip.version]] + [n for n in keep if n.version == ip.version]
        same_family = cast("list[ipaddress.IPv4Network]", nets)
        outside = ipaddress.collapse_addresses(same_family)
        expr = [
            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": str(ip.ip)}},
            {
                "match": {
                    "op": "!=",
                    "left": {"payload": {"protocol": proto, "field": "daddr"}},
                    "right": {"set": [{"prefix": {"addr": str(n.network_address), "len": n.prefixlen}} for n in outside]},
                }
            },
            {"masquerade": None},
        ]
        cmds.append(
            {
                "add": {
                    "rule": {
                        "family": NFT_FAMILY,
                        "table": NFT_TABLE,
                        "chain": chain,
                        "comment": comment(network, container_id, ifname),
                        "expr": expr,
                    }
                }
            }
        )
    return {"nftables": cmds}


def nft_delete_batch(chains: Iterable[str]) -> dict[str, Any]:
    """The JSON transaction that removes chains, present or not (pure)."""
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": NFT_FAMILY, "name": NFT_TABLE}}}]
    for chain in chains:
        cmds += [
            {"add": {"chain": _nat_chain(chain)}},
            {"flush": {"chain": _chain_ref(chain)}},
            {"delete": {"chain": _chain_ref(chain)}},
        ]
    return {"nftables": cmds}


def _nft(path: str, batch: dict[str, Any]) -> None:
    _run([_tool("nft", path), "-j", "-f", "-"], json.dumps(batch))


def nft_chains(*, path: str) -> list[str]:
    """Names of the chains in our table (empty if there is no table)."""
    _tool("nft", path)
    return nft_table_chains(path=path) or []


def nft_table_chains(*, path: str) -> list[str] | None:
    """Names of the chains in our table; None when there is no table (or no nft)."""
    nft = _which("nft", path)
    if nft is None:
        return None
    proc = subprocess.run(
        [nft, "-j", "list", "table", NFT_FAMILY, NFT_TABLE],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
    )
    if proc.returncode != 0:
        return None  # no such table
    try:
        items = json.loads(proc.stdout).get("nftables", [])
    except ValueError:
        raise CNIError(Code.KERNEL, "nft printed a ruleset that is not JSON") from None
    return [i["chain"]["name"] for i in items if isinstance(i, dict) and "chain" in i]


# -------------------------------------------------------------------- iptables
def _iptables(version: int, path: str) -> str:
    return _tool("iptables" if version == 4 else "ip6tables", path)


def _ipt(path: str, version: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([_iptables(version, path), "-w", "5", "-t", "nat", *args], None, check=check)


def _ipt_setup(
    network: str, container_id: str, ifname: str, ips: Iterable[IPInterface], keep: Iterable[IPNetwork], path: str
) -> None:
    chain = iptables_chain(network, container_id, ifname)
    keep = list(keep)
    note = comment(network, container_id, ifname)
    for version in sorted({ip.version for ip in ips}):
        _ipt(path, version, "-N", chain, check=False)  # exists already: reused, flushed next
        _ipt(path, version, "-F", chain)
        for ip in (i for i in ips if i.version == version):
            _ipt(path, version, "-A", chain, "-d", str(ip.network), "-j", "ACCEPT", "-m", "comment", "--comment", note)
            for net in (n for n in keep if n.version == version):
                _ipt(path, version, "-A", chain, "-d", str(net), "-j", "ACCEPT", "-m", "comment", "--comment", note)
            multicast = str(_MULTICAST[version])
            _ipt(path, version, "-A", chain, "!", "-d", multicast, "-j", "MASQUERADE", "-m", "comment", "--comment", note)
            jump = ["POSTROUTING", "-s", str(ip.ip), "-j", chain, "-m", "comment", "--comment", note]
            if _ipt(path, version, "-C", *jump, check=False).returncode != 0:
                _ipt(path, version, "-A", *jump)


def _ipt_teardown(network: str, container_id: str, ifname: str, path: str) -> None:
    remove_ipt_chains([iptables_chain(network, container_id, ifname)], path=path)


def _ipt_present(version: int, path: str) -> bool:
    return _which("iptables" if version == 4 else "ip6tables", path) is not None


def remove_ipt_chains(chains: list[str], *, path: str) -> None:
    """Remove chains and their POSTROUTING jumps, in iptables and ip6tables; missing ones are success."""
    for version in (4, 6):
        if not _ipt_present(version, path):
            continue
        listing = _ipt(path, version, "-S", "POSTROUTING", check=False)
        for line in listing.stdout.splitlines():
            words = _split(line)
            if words[:2] == ["-A", "POSTROUTING"] and _target(words) in chains:
                _ipt(path, version, "-D", *words[1:], check=False)
        for chain in chains:
            _ipt(path, version, "-F", chain, check=False)
            _ipt(path, version, "-X", chain, check=False)


def ipt_chains(*, path: str) -> list[str]:
    """nsveth's (NSV-) chains in the nat table of iptables and ip6tables, each name once."""
    found: set[str] = set()
    for version in (4, 6):
        if _ipt_present(version, path):
            for line in _ipt(path, version, "-S", check=False).stdout.splitlines():
                words = _split(line)
                if words[:1] == ["-N"] and len(words) == 2 and words[1].startswith(IPT_PREFIX):
                    found.add(words[1])
    return sorted(found)


def _split(line: str) -> list[str]:
    import shlex

    try:
        return shlex.split(line)
    except ValueError:
        return []


def _target(words: list[str]) -> str | None:
    for flag in ("-j", "--jump"):
        if flag in words:
            i = words.index(flag)
            return words[i + 1] if i + 1 < len(words) else None
    return None


# ---------------------------------------------------------------------- shared
def setup(
    kind: str,
    network: str,
    container_id: str,
    ifname: str,
    ips: Iterable[IPInterface],
    keep: Iterable[IPNetwork] = (),
    *,
    path: str,
) -> None:
    """Masquerade the pod's addresses, except towards its subnet, multicast and `keep`."""
    ips = list(ips)
    if not ips:
        return
    if kind == "nftables":
        _nft(path, nft_add_batch(network, container_id, ifname, ips, keep))
    else:
        _ipt_setup(network, container_id, ifname, ips, keep, path)


def teardown(kind: str, network: str, container_id: str, ifname: str, *, path: str) -> None:
    """Remove the attachment's rules; nothing there is success."""
    if kind == "nftables":
        if _which("nft", path) is not None:
            _nft(path, nft_delete_batch([nft_chain(network, container_id, ifname)]))
    else:
        _ipt_teardown(network, container_id, ifname, path)


def missing(kind: str, network: str, container_id: str, ifname: str, ips: Iterable[IPInterface], *, path: str) -> list[str]:
    """For CHECK: each pod address without its masquerade rule."""
    if kind == "nftables":
        chain = nft_chain(network, container_id, ifname)
        proc = _run([_tool("nft", path), "-j", "list", "chain", NFT_FAMILY, NFT_TABLE, chain], None, check=False)
        have = set()
        if proc.returncode == 0:
            try:
                items = json.loads(proc.stdout).get("nftables", [])
            except ValueError:
                items = []
            for item in items:
                exprs = item.get("rule", {}).get("expr", []) if isinstance(item, dict) else []
                if any("masquerade" in e for e in exprs):
                    have |= {e["match"]["right"] for e in exprs if "match" in e and e["match"].get("op") == "=="}
        return [f"masquerade rule for {ip.ip} is missing" for ip in ips if str(ip.ip) not in have]
    out = []
    chain = iptables_chain(network, container_id, ifname)
    for ip in ips:
        listing = _ipt(path, ip.version, "-S", "POSTROUTING", check=False).stdout
        jumps = [_split(line) for line in listing.splitlines()]
        if not any(_target(w) == chain and str(ipaddress.ip_network(ip.ip)) in w for w in jumps):
            out.append(f"masquerade rule for {ip.ip} is missing")
    return out


def stale_nft_chains(network: str, keep: Iterable[tuple[str, str]], *, path: str) -> list[str]:
    """Chains of `network` in our table that belong to none of the `keep` attachments."""
    if _which("nft", path) is None:
        return []
    wanted = {nft_chain(network, cid, ifname) for cid, ifname in keep}
    return [c for c in nft_chains(path=path) if is_chain_of(network, c) and c not in wanted]


def is_chain_of(network: str, chain: str) -> bool:
    """Whether `chain` is named like an attachment chain of `network` (pure)."""
    prefix, _, digest = chain.rpartition("-")
    return prefix == network and len(digest) == 16 and all(ch in "0123456789abcdef" for ch in digest)


def remove_nft_chains(chains: list[str], *, path: str) -> None:
    if chains:
        _nft(path, nft_delete_batch(chains))


def remove_nft_table(*, path: str) -> None:
    """Delete table inet nsveth with every chain in it (for `nsveth cleanup`; the table must exist)."""
    _nft(path, {"nftables": [{"delete": {"table": {"family": NFT_FAMILY, "name": NFT_TABLE}}}]})


def _tool(name: str, path: str) -> str:
    found = _which(name, path)
    if found is None:
        raise CNIError(Code.KERNEL, f"ipMasq: {name} is not installed")
    return found


def _run(argv: list[str], stdin: str | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CNIError(Code.KERNEL, f"ipMasq: {os.path.basename(argv[0])} failed: {e}") from None
    if check and proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        raise CNIError(
            Code.KERNEL,
            f"ipMasq: {os.path.basename(argv[0])} {' '.join(argv[1:4])} failed (exit {proc.returncode})",
            "\n".join(text[-5:])[:2000],
        )
    return proc
