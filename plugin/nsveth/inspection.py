"""`nsveth inspect`: the attachments on this node, from the state records.

Every ADD writes a record (see state.py) naming the network, container,
interface, host veth, netns and, when the runtime passed them, the pod; this
lists them, all or filtered, as a table or JSON. It reads records only
through state.py and never loads netlink (pyroute2): nothing here touches the
kernel's network state, so it is as cheap as listing a directory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any

from . import cli, config, senders, state
from .attachment import host_ifname
from .errors import CNIError

DESCRIPTION = """\
List the pod attachments nsveth holds on this node, from the state records in
the runtime dir: network, pod (K8S_POD_NAMESPACE/K8S_POD_NAME when the runtime
passed them), container ID, interface, host veth, addresses, netns, phase, age
and the announcement sender if it still runs.

phase "added" is a complete attachment; "adding" is an ADD in progress or one
that was killed mid-way (its runtime's DEL, the next ADD of it or a GC cleans
it up); "unreadable" is a record nsveth cannot parse (DEL still works by name).
Exit status: 0, or 1 when a filter matches nothing or the runtime dir cannot
be read.
"""

# (heading, key of the entry) in table order
COLUMNS = (
    ("NETWORK", "network"),
    ("POD", "pod"),
    ("CONTAINER", "container"),
    ("IFNAME", "ifname"),
    ("HOST VETH", "hostIfname"),
    ("ADDRESSES", "addresses"),
    ("NETNS", "netns"),
    ("PHASE", "phase"),
    ("AGE", "age"),
    ("SENDER", "sender"),
)
SHORT_ID = 12  # container IDs in the table, as docker and crictl show them


def parser() -> argparse.ArgumentParser:
    p = cli.parser("nsveth inspect", DESCRIPTION, config.DEFAULT_RUNTIME_DIR)
    p.add_argument("--network", help="only attachments of this network")
    p.add_argument("--container", metavar="ID", help="only this container (an ID prefix is enough)")
    p.add_argument("--pod", metavar="[NAMESPACE/]NAME", help="only this pod (from K8S_POD_NAMESPACE/K8S_POD_NAME)")
    p.add_argument("--json", action="store_true", help="a JSON array (full container IDs, ages in seconds)")
    return p


def collect(runtime_dir: str, now: float | None = None) -> list[dict[str, Any]]:
    """One entry per state record under `runtime_dir`, sorted by network, container, interface.

    Raises OSError when the runtime dir cannot be read (e.g. not root).
    """
    now = time.time() if now is None else now
    out = []
    for network in state.networks(runtime_dir):
        for container_id, ifname in state.attachments(runtime_dir, network):
            try:
                record = state.read(runtime_dir, network, container_id, ifname)
            except CNIError:
                record = {}  # unusable (forged, oversized, malformed): listed as "unreadable"
            if record is None:
                continue  # removed (a DEL) between listing and reading
            out.append(_entry(runtime_dir, network, container_id, ifname, record, now))
    return out


def _entry(runtime_dir: str, network: str, container_id: str, ifname: str, record: dict[str, Any], now: float) -> dict[str, Any]:
    written = state.written_at(runtime_dir, network, container_id, ifname)
    namespace, name = _text(record.get("podNamespace")), _text(record.get("podName"))
    sender = senders.recorded(record)
    addresses = record.get("addresses")
    lock = state.sender_lock(runtime_dir, network, container_id, ifname)
    return {
        "network": network,
        "pod": f"{namespace}/{name}" if namespace and name else name,
        "podNamespace": namespace,
        "podName": name,
        "containerID": container_id,
        "ifname": ifname,
        # The name derives from the attachment: known even when the record is unreadable.
        "hostIfname": _text(record.get("hostIfname")) or host_ifname(container_id, ifname),
        "addresses": [a for a in addresses if isinstance(a, str)] if isinstance(addresses, list) else [],
        "netns": _text(record.get("netns")),
        "phase": _text(record.get("phase")) or "unreadable",
        "mode": _text(record.get("mode")),
        "masquerade": _text(record.get("masq")),
        "writtenAt": _iso(written),
        "ageSeconds": max(0, int(now - written / 1e9)) if written is not None else None,
        "sender": {"pid": sender[0], "running": senders.running(record, lock) is not None} if sender else None,
    }


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat(timespec="seconds")


def select(
    entries: list[dict[str, Any]], network: str | None = None, container: str | None = None, pod: str | None = None
) -> list[dict[str, Any]]:
    """Entries matching every filter given: network exactly, a container ID prefix, a pod as NAME or NAMESPACE/NAME."""
    out = []
    for e in entries:
        if network is not None and e["network"] != network:
            continue
        if container is not None and not e["containerID"].startswith(container):
            continue
        if pod is not None and pod not in (e["pod"], e["podName"]):
            continue
        out.append(e)
    return out


def age(seconds: int | None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cells(e: dict[str, Any]) -> dict[str, str]:
    sender = e["sender"]
    return {
        "network": e["network"],
        "pod": e["pod"] or "-",
        "container": e["containerID"][:SHORT_ID],
        "ifname": e["ifname"],
        "hostIfname": e["hostIfname"],
        "addresses": ",".join(e["addresses"]) or "-",
        "netns": e["netns"] or "-",
        "phase": e["phase"],
        "age": age(e["ageSeconds"]),
        "sender": f"pid {sender['pid']}" if sender and sender["running"] else "-",
    }


def table(entries: list[dict[str, Any]]) -> str:
    """Aligned columns, one line per entry, a heading line first."""
    rows = [[heading for heading, _ in COLUMNS]]
    for e in entries:
        cells = _cells(e)
        rows.append([cells[key] for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        entries = collect(args.runtime_dir)
    except OSError as e:
        hint = " (run as root)" if isinstance(e, PermissionError) else ""
        sys.stderr.write(f"nsveth inspect: cannot read runtime dir {args.runtime_dir}: {e.strerror}{hint}\n")
        return 1
    filtered = args.network is not None or args.container is not None or args.pod is not None
    chosen = select(entries, args.network, args.container, args.pod)
    if args.json:
        sys.stdout.write(json.dumps(chosen, indent=2) + "\n")
    elif chosen or not filtered:
        sys.stdout.write(table(chosen))
    if filtered and not chosen:
        sys.stderr.write("nsveth inspect: no attachment matches\n")
        return 1
    return 0
