"""Everything the plugin could change on a host, captured so two moments can be compared.

A snapshot of a network namespace is read by the `ip` and `nft` tools and
from /proc/sys/net, never through nsveth's own code: links, addresses,
routes of every table, policy rules, every sysctl under /proc/sys/net and
the nftables ruleset (which also holds the iptables-nft rules a masquerade
backend adds). One `ip netns exec` runs all of it (about 15 ms).

`files()` lists what is on disk under a sandbox dir (IPAM leases, state
records), without the lock files (network and bridge locks) and caches that
are meant to stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

_SEP = "=====8<=====nsveth-snapshot=====8<====="
_SCRIPT = f"""
ip -j -d link show; echo '{_SEP}'
ip -j addr show; echo '{_SEP}'
ip -j -4 route show table all; echo '{_SEP}'
ip -j -6 route show table all; echo '{_SEP}'
ip -j -4 rule show; echo '{_SEP}'
ip -j -6 rule show; echo '{_SEP}'
grep -r . /proc/sys/net 2>/dev/null; echo '{_SEP}'
nft list ruleset 2>/dev/null
"""
_PARTS = ("links", "addresses", "routes4", "routes6", "rules4", "rules6", "sysctls", "nft")

# Counters, not settings: traffic moves them.
_VOLATILE_SYSCTLS = {"/proc/sys/net/netfilter/nf_conntrack_count"}
# Link attributes that move without anyone changing the link.
_VOLATILE_LINK_KEYS = {"stats", "stats64", "operstate", "linkmode", "carrier_changes", "carrier_up_count", "carrier_down_count"}


def _stable(node: Any) -> Any:
    """A link description without counters and timers (bridge gc/hello timers tick by themselves)."""
    if isinstance(node, dict):
        out = {k: _stable(v) for k, v in node.items() if k not in _VOLATILE_LINK_KEYS and not k.endswith("_timer")}
        if isinstance(out.get("flags"), list):  # carrier follows the ports (a bridge loses it with its last port)
            out["flags"] = [f for f in out["flags"] if f not in ("LOWER_UP", "NO-CARRIER")]
        return out
    if isinstance(node, list):
        return [_stable(v) for v in node]
    return node


def snapshot(ns_name: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns_name, "sh", "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    chunks = proc.stdout.split(_SEP + "\n")
    if len(chunks) != len(_PARTS):
        raise RuntimeError(f"snapshot of netns {ns_name} failed: {proc.stderr.strip()}")
    out: dict[str, Any] = {}
    for part, text in zip(_PARTS, chunks, strict=True):
        if part == "sysctls":
            pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
            out[part] = {k: v for k, v in pairs if k not in _VOLATILE_SYSCTLS}
        elif part == "nft":
            out[part] = text.strip()
        else:
            value = json.loads(text) if text.strip() else []
            if part == "links":
                value = [_stable(link) for link in value]
            out[part] = value
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    problems = []
    for part in _PARTS:
        a, b = before.get(part), after.get(part)
        if a == b:
            continue
        if part == "sysctls":
            keys = sorted(set(a) | set(b))
            changed = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
            problems.append(f"sysctls changed: {changed[:20]}")
        elif part == "links":
            names_a = {link["ifname"]: link for link in a}
            names_b = {link["ifname"]: link for link in b}
            added = sorted(set(names_b) - set(names_a))
            removed = sorted(set(names_a) - set(names_b))
            changed = sorted(n for n in set(names_a) & set(names_b) if names_a[n] != names_b[n])
            problems.append(f"links changed: added {added}, removed {removed}, modified {changed}")
        else:
            problems.append(f"{part} changed:\n  before {a}\n  after  {b}")
    return problems


def files(root: str) -> list[str]:
    """Regular files under `root`, relative; lock files, delegate and validation caches, logs excluded."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if d not in (".delegates", ".validated", "logs", "bin")]
        for name in filenames:
            if name == "lock" or name.endswith(".lock") or name.startswith("last_reserved_ip"):
                continue
            found.append(os.path.normpath(os.path.join(rel_dir, name)))
    return sorted(found)


# A pod-wide sysctl (one per netns, not per interface: it outlives the pod's
# interface, so only DEL's restore puts it back) and a value that differs from
# a new netns's default (32768 60999).
POD_WIDE_SYSCTL = "net.ipv4.ip_local_port_range"
POD_WIDE_VALUE = "20000 40000"
POD_WIDE_PATH = "/proc/sys/" + POD_WIDE_SYSCTL.replace(".", "/")  # its key in a snapshot's sysctls


def pod_wide_sysctl(ns_name: str) -> str:
    """The value of POD_WIDE_SYSCTL in a netns, as written ("20000 40000", not tab-separated)."""
    proc = subprocess.run(["ip", "netns", "exec", ns_name, "cat", POD_WIDE_PATH], check=True, capture_output=True, text=True)
    return " ".join(proc.stdout.split())


def masquerade(ns_name: str, network: str) -> list[str]:
    """Lines of a netns's nftables ruleset that masquerade for `network`: nsveth's
    per-attachment chains (`<network>-<hash>`) and rules commented with the network
    (the nftables backend, and the iptables one through iptables-nft)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", ns_name, "nft", "list", "ruleset"], check=True, capture_output=True, text=True, timeout=60
    )
    marks = (f"chain {network}-", f'"nsveth {network} ')
    return [line.strip() for line in proc.stdout.splitlines() if any(m in line for m in marks)]


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds `marker` (orphan helpers of a killed plugin)."""
    needle = marker.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


NODE_BRIDGE = "nsrbr0"


def make_node(ns_name: str) -> None:
    """Turn a fresh netns into the host side of a node that already runs pods.

    Forwarding on, a bridge for bridge-mode networks (pinned MAC, as nsveth pins
    its own; one permanent port so its carrier does not come and go with the
    pods), and the shared masquerade table: objects that outlive every pod by
    design, so the plugin's first use of them is not counted as a change.
    """

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", ns_name, *args], check=True, capture_output=True)

    subprocess.run(
        ["ip", "netns", "exec", ns_name, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        check=True, capture_output=True,
    )
    ip("link", "add", NODE_BRIDGE, "address", "02:00:00:00:be:ef", "type", "bridge")
    ip("link", "set", NODE_BRIDGE, "addrgenmode", "none")
    ip("link", "add", "nsrkeep0", "type", "veth", "peer", "name", "nsrkeep1")
    for name in ("nsrkeep0", "nsrkeep1"):
        ip("link", "set", name, "addrgenmode", "none")
    ip("link", "set", "nsrkeep0", "master", NODE_BRIDGE)
    for name in (NODE_BRIDGE, "nsrkeep0", "nsrkeep1"):
        ip("link", "set", name, "up")
    subprocess.run(["ip", "netns", "exec", ns_name, "nft", "add", "table", "inet", "nsveth"], check=True, capture_output=True)
    # Let carrier and the kernel's routes settle before anyone takes a snapshot.
    deadline = time.monotonic() + 5
    previous = None
    while time.monotonic() < deadline:
        current = snapshot(ns_name)
        if current == previous:
            return
        previous = current
        time.sleep(0.2)
