"""`nsveth cleanup`: remove what nsveth created on this host, for hosts leaving nsveth.

What it removes, in the current network namespace and one runtime dir:
- bridges nsveth created (marked with IFLA_IFALIAS "nsveth" at creation, see
  bridge.py) that have no ports left; an unmarked bridge is never touched;
- table inet nsveth (nftables) and the NSV- chains of iptables/ip6tables'
  nat table with their POSTROUTING jumps;
- the runtime dir: state records, locks, the validation and delegate caches.
Host-wide objects (the table, the chains, bridges) are shared by every
runtimeDir on the host: with several runtime dirs, run it when none is used.

While attachments (state records) exist it refuses, listing them: their pods
still use those rules and bridges. `--force` first tears each of them down as
the runtime's DEL would (from its record: sender, masquerade rules, host veth,
pod interface, IPAM lease with the config its ADD had; the pods lose their
network), then removes the rest. ip_forward / IPv6 forwarding stay as they
are: nsveth does not record the value it found, so it cannot restore it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import stat
import sys
from collections.abc import Mapping
from typing import Any

from . import cli, client, config, inspection, state
from .errors import CNIError

DEFAULT_CNI_PATH = "/opt/cni/bin:/usr/lib/cni"
# Top-level dot-dirs of a runtime dir (caches and bridge locks); everything
# else there is a network's dir (names start with a letter or digit).
RUNTIME_CACHES = (".validated", ".bridges", ".delegates")
_NETWORK_FILE = re.compile(r"lock|[^/]+\.json|[^/]+\.tmp")
_SERVER_SOCKET = os.path.basename(client.DEFAULT_SOCKET)  # the warm server's, in the default runtime dir


@dataclasses.dataclass
class Plan:
    """What cleanup finds on the host, and what it would remove."""

    attachments: list[dict[str, Any]]
    bridges: list[str]  # marked, no ports: removed
    busy_bridges: dict[str, list[str]]  # marked, with ports (their names): kept
    nft_chains: list[str] | None  # None: no table
    ipt_chains: list[str]
    runtime_dir: str | None  # None: nothing there
    unknown: list[str]  # what in the runtime dir is kept, and why (then so is the dir)

    def removals(self) -> list[str]:
        out = [f"bridge {b} (created by nsveth, no ports)" for b in self.bridges]
        if self.nft_chains is not None:
            out.append(f"nftables table inet nsveth ({len(self.nft_chains)} chain(s))")
        out += [f"iptables/ip6tables nat chain {c} and its POSTROUTING jumps" for c in self.ipt_chains]
        if self.runtime_dir is not None and not self.unknown:
            out.append(f"runtime dir {self.runtime_dir} (state records, locks, caches)")
        return out


def parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    p = cli.parser("nsveth cleanup", __doc__ or "", config.DEFAULT_RUNTIME_DIR)
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, change nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="tear down the remaining attachments first, as DEL would (their pods lose their network)",
    )
    p.add_argument(
        "--cni-path",
        default=env.get("CNI_PATH") or DEFAULT_CNI_PATH,
        help=f"with --force: where the IPAM plugins are (default $CNI_PATH or {DEFAULT_CNI_PATH})",
    )
    return p


def survey(runtime_dir: str, path: str) -> Plan:
    """Look, change nothing (`path`: where nft and iptables are). Raises OSError if the runtime dir cannot be read."""
    from . import links, masq
    from .bridge import MARK
    from .netlink import Socket

    with Socket() as sock:
        every = links.dump(sock)
    ports: dict[int, list[str]] = {}
    for link in every:
        if link.master:
            ports.setdefault(link.master, []).append(link.name)
    marked = [link for link in every if link.kind == "bridge" and link.alias == MARK]
    unknown: list[str] = []
    present = os.path.lexists(runtime_dir)
    if present:
        unknown = _unknown_entries(runtime_dir)
    return Plan(
        attachments=inspection.collect(runtime_dir),
        bridges=sorted(b.name for b in marked if b.index not in ports),
        busy_bridges={b.name: sorted(ports[b.index]) for b in marked if b.index in ports},
        nft_chains=masq.nft_table_chains(path=path),
        ipt_chains=masq.ipt_chains(path=path),
        runtime_dir=runtime_dir if present else None,
        unknown=unknown,
    )


def _unknown_entries(runtime_dir: str) -> list[str]:
    """What under the runtime dir nsveth did not make, or is in use (a live warm server's
    socket), each with why it stays (then the dir stays too). A dead server's socket is nsveth's.

    The dir itself must look like one nsveth uses (a directory owned by this
    user, writable by no one else): a mistyped --runtime-dir never removes a
    directory of someone else's.
    """
    st = os.lstat(runtime_dir)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return [f"{runtime_dir} (not a directory owned by uid {os.geteuid()} and writable by no one else)"]
    out = []
    for name in sorted(os.listdir(runtime_dir)):
        path = os.path.join(runtime_dir, name)
        if name == _SERVER_SOCKET and stat.S_ISSOCK(os.lstat(path).st_mode):
            try:
                live = client.listening(path)
            except OSError:
                live = True  # cannot tell: keep it
            if live:
                out.append(f"{path} (the warm server's socket: nsveth serve is listening; stop it, or nsveth.socket, first)")
            continue  # a dead server's socket goes with the dir
        if not os.path.isdir(path) or os.path.islink(path):
            out.append(f"{path} (not made by nsveth)")
        elif name not in RUNTIME_CACHES:
            if name.startswith("."):
                out.append(f"{path} (not made by nsveth)")
                continue
            for child in sorted(os.listdir(path)):
                if not _NETWORK_FILE.fullmatch(child) or not os.path.isfile(os.path.join(path, child)):
                    out.append(f"{os.path.join(path, child)} (not made by nsveth)")
    return out


def teardown_attachments(runtime_dir: str, cni_path: str, path: str) -> list[str]:
    """DEL, from its record, of every attachment (under each network's exclusive lock); the failures."""
    from . import commands, request, validation_cache

    failures = []
    for network in state.networks(runtime_dir):
        with state.lock(runtime_dir, network, exclusive=True):
            for container_id, ifname in state.attachments(runtime_dir, network):
                try:
                    record = state.read(runtime_dir, network, container_id, ifname) or {}
                except CNIError:
                    record = {}  # unusable: released by name, as DEL does then
                recorded_netns = record.get("netns")
                netns = recorded_netns if isinstance(recorded_netns, str) else ""
                env: dict[str, str] = {
                    "CNI_COMMAND": "DEL",
                    "CNI_CONTAINERID": container_id,
                    "CNI_IFNAME": ifname,
                    "CNI_NETNS": netns,
                    "CNI_PATH": cni_path,
                    "PATH": path,
                }
                what = f"{network} {container_id}/{ifname}"
                raw = record.get("config")
                if not isinstance(raw, str):
                    failures.append(f"{what}: its record holds no config, so its IPAM lease cannot be released")
                    continue
                try:
                    req = request.parse(env)
                    conf = dataclasses.replace(config.load(raw.encode(), req, validation_cache.validate), runtime_dir=runtime_dir)
                    commands.release_recorded(req, conf, container_id, ifname)
                except CNIError as e:
                    failures.append(f"{what}: {e.msg}")
                else:
                    print(f"tore down: {what}")
    return failures


def remove(plan: Plan, path: str) -> list[str]:
    """Remove what `plan` lists; the failures."""
    from . import links, masq
    from .netlink import NetlinkError, Socket

    failures = []
    with Socket() as sock:
        for name in plan.bridges:
            try:
                links.delete(sock, name)
            except NetlinkError as e:
                failures.append(f"bridge {name}: {e.strerror}")
    try:
        if plan.nft_chains is not None:
            masq.remove_nft_table(path=path)
        if plan.ipt_chains:
            masq.remove_ipt_chains(plan.ipt_chains, path=path)
    except CNIError as e:
        failures.append(e.msg)
    if plan.runtime_dir is not None and not plan.unknown:
        try:
            shutil.rmtree(plan.runtime_dir)
        except OSError as e:
            failures.append(f"runtime dir {plan.runtime_dir}: {e.strerror}")
    return failures


def unrecorded_use(plan: Plan) -> list[str]:
    """What is in use on the host that no record in this runtime dir explains.

    The table, the chains and the bridges are shared by every runtimeDir on the
    host: a port on a marked bridge, or a masquerade chain no record here names,
    belongs to a live pod of another runtime dir (or a mistyped --runtime-dir),
    and removing the table or the bridge would cut its traffic.
    """
    from . import masq

    ids = [(str(a["network"]), str(a["containerID"]), str(a["ifname"])) for a in plan.attachments]
    nft_known = {masq.nft_chain(*i) for i in ids}
    ipt_known = {masq.iptables_chain(*i) for i in ids}
    veths = {a["hostIfname"] for a in plan.attachments}
    foreign_ports = {b: [p for p in ports if p not in veths] for b, ports in plan.busy_bridges.items()}
    return (
        [f"bridge {b} has ports {', '.join(p)}" for b, p in foreign_ports.items() if p]
        + [f"nftables chain {c}" for c in plan.nft_chains or [] if c not in nft_known]
        + [f"iptables chain {c}" for c in plan.ipt_chains if c not in ipt_known]
    )


def _refuse_unrecorded_use(plan: Plan, err: Any) -> bool:
    in_use = unrecorded_use(plan)
    if in_use:
        err.write(
            f"nsveth cleanup: in use, but not by an attachment recorded in {plan.runtime_dir or 'this runtime dir'} "
            "(pods of another runtimeDir, or a mistyped --runtime-dir); nothing was removed:\n"
        )
        err.writelines(f"  {u}\n" for u in in_use)
    return bool(in_use)


def main(argv: list[str], env: Mapping[str, str]) -> int:
    args = parser(env).parse_args(argv)
    path = env.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"
    out, err = sys.stdout, sys.stderr
    try:
        plan = survey(args.runtime_dir, path)
    except OSError as e:
        hint = " (run as root)" if isinstance(e, PermissionError) else ""
        err.write(f"nsveth cleanup: cannot read {e.filename or args.runtime_dir}: {e.strerror}{hint}\n")
        return 1
    if plan.attachments and not args.force:
        err.write(
            f"nsveth cleanup: {len(plan.attachments)} attachment(s) still use nsveth; remove their pods (the "
            "runtime's DEL) first, or use --force to tear them down as DEL would:\n"
        )
        err.write(inspection.table(plan.attachments))
        return 1
    if _refuse_unrecorded_use(plan, err):
        return 1
    verb = "would remove" if args.dry_run else "removed"
    if plan.attachments:
        if args.dry_run:
            out.writelines(f"would tear down: {e['network']} {e['containerID']}/{e['ifname']}\n" for e in plan.attachments)
        else:
            failures = teardown_attachments(args.runtime_dir, args.cni_path, path)
            if failures:
                err.write("nsveth cleanup: could not tear down every attachment (nothing else was removed):\n")
                err.writelines(f"  {f}\n" for f in failures)
                return 1
            plan = survey(args.runtime_dir, path)
            if _refuse_unrecorded_use(plan, err):
                return 1
    failures = [] if args.dry_run else remove(plan, path)
    out.writelines(f"{verb}: {r}\n" for r in plan.removals())
    out.writelines(f"kept: {u}; the runtime dir stays\n" for u in plan.unknown)
    if not plan.removals() and not args.dry_run:
        out.write("nothing of nsveth's to remove\n")
    out.write(
        "left: net.ipv4.ip_forward and IPv6 forwarding as they are (nsveth does not record the value it "
        "found; set them back yourself if nothing else on this host routes)\n"
    )
    if failures:
        err.write("nsveth cleanup: could not remove everything:\n")
        err.writelines(f"  {f}\n" for f in failures)
        return 1
    return 0
