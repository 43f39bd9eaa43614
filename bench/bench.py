#!/usr/bin/env python3
"""nsveth vs. the reference Go ptp plugin, side by side (see bench/README.md).

Run as root from the repository, after ./build.sh [--onefile]:

    .venv/bin/python bench/bench.py [-n 40] [--dual 8] [--parallel 50] [--json FILE]

The script puts itself in a throwaway host netns (ip netns exec) so nothing
reaches the machine's own network, gives every plugin a private host-local
dataDir and runtimeDir in a temp dir, and removes every netns it made.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

# The test suites' helpers (tests/support.py): netns, ip -j, the CNI network and the warm server.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from itertools import pairwise

import support  # noqa: E402

REPO = support.REPO
CNI_PATH = support.CNI_PATH
PTP = os.path.join(CNI_PATH, "ptp")
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
INNER = "NSVETH_BENCH_INNER"
SPEC = "1.0.0"  # Debian's host-local speaks up to 1.0.0: no version negotiation on either side


# ------------------------------------------------------------------ plugins
class Variant:
    """One plugin build under test, with its own network, subnets and dirs."""

    def __init__(self, label: str, kind: str, argv: list[str], index: int, tmp: str, env: dict[str, str] | None = None) -> None:
        self.label, self.kind, self.argv = label, kind, argv
        self.env = env or {}  # extra environment of every call (NSVETH_SOCKET)
        self.server_log: str | None = None  # served: the warm server's log (CPU of each request's process)
        self._log_pos = 0
        self.v4 = f"10.{200 + index}.0.0/16"
        self.v6 = f"fd00:b:{index}::/64"
        self.network = support.Network(os.path.join(tmp, label), self.v4, name=f"bench-{label}")
        self.net = self.network.name

    def conf(self, dual: bool, pad: int = 0) -> dict[str, Any]:
        conf = self.network.conf(SPEC, [self.v4, self.v6] if dual else [self.v4], type=self.kind)
        if self.kind != "nsveth":
            del conf["runtimeDir"]
        return conf

    def leases(self) -> int:
        return len(self.network.leases())

    def served_cpu(self) -> dict[int, tuple[float, float]]:
        """Client pid -> CPU ms of the request's process with its IPAM child, and of that child
        alone, from the server's log lines written since the last call."""
        if not self.server_log:
            return {}
        with open(self.server_log) as f:
            f.seek(self._log_pos)
            text = f.read()
            self._log_pos = f.tell()
        out = {}
        for m in re.finditer(r" cpu=([0-9.]+)ms (?:children=([0-9.]+)ms )?(?:faults=[0-9]+ )?pid=([0-9]+)$", text, re.M):
            out[int(m.group(3))] = (float(m.group(1)), float(m.group(2) or 0))
        return out

    def invoke(self, command: str, cid: str, netns: str, stdin: bytes, extra: dict[str, str] | None = None) -> Call:
        """One call; for a served variant, its CPU includes the request's process in the server."""
        call = invoke(self.argv, env_for(command, cid, netns, {**self.env, **(extra or {})}), stdin)
        if self.server_log:
            request_ms, ipam_ms = self.served_cpu().get(call.pid, (0.0, 0.0))
            call.cpu_ms += request_ms
            call.ipam_cpu_ms = ipam_ms
        return call

    def state_files(self) -> int:
        return len(self.network.state_files())


class Call:
    def __init__(self, ok: bool, ms: float, cpu_ms: float, t0: int, t1: int, stdout: bytes, stderr: bytes, pid: int = 0) -> None:
        self.ok, self.ms, self.cpu_ms, self.t0, self.t1, self.stdout, self.stderr = ok, ms, cpu_ms, t0, t1, stdout, stderr
        self.pid = pid
        self.ipam_cpu_ms: float | None = None  # a served call's: the IPAM child's share of cpu_ms


def env_for(command: str, cid: str, netns: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return support.cni_env(command, cid, netns, PATH="/usr/sbin:/usr/bin:/sbin:/bin", **(extra or {}))


def invoke(argv: list[str], env: dict[str, str], stdin: bytes) -> Call:
    """Run one plugin command: wall time from spawn to exit, and the CPU time of
    the plugin and every process it waited for (its IPAM delegate). CPU time is
    what a loaded machine does not inflate much, so it is reported too."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin)
        fin.seek(0)
        t0 = time.monotonic_ns()
        proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        t1 = time.monotonic_ns()
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    cpu = (usage.ru_utime + usage.ru_stime) * 1e3
    return Call(proc.returncode == 0, (t1 - t0) / 1e6, cpu, t0, t1, out, err, proc.pid)


@contextlib.contextmanager
def pod_netns(count: int = 1):
    names: list[str] = []
    try:
        for _ in range(count):
            names.append(support.netns_add("nsvb-"))
        yield [support.netns_path(n) for n in names]
    finally:
        for n in names:
            support.netns_delete(n)


def host_links() -> list[str]:
    return [link["ifname"] for link in support.ip_json(None, "link", "show") if link["ifname"] != "lo"]


def pod_links(path: str) -> list[str]:
    return [link["ifname"] for link in support.ip_json(os.path.basename(path), "link", "show") if link["ifname"] != "lo"]


# -------------------------------------------------------------------- stats
def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    p95 = s[min(len(s) - 1, max(0, int(round(0.95 * len(s) + 0.5)) - 1))]
    return {"n": len(s), "min": s[0], "median": statistics.median(s), "p95": p95, "mean": statistics.fmean(s)}


def fail_text(label: str, what: str, call: Call) -> str:
    out, err = call.stdout.decode(errors="replace").strip(), call.stderr.decode(errors="replace").strip()
    return f"{label} {what} failed: {out[:300]} {err[-300:]}"


# --------------------------------------------------------------- side by side
def side_by_side(variants: list[Variant], n: int, dual: bool, errors: list[str]) -> dict[str, Any]:
    """N rounds; each round runs ADD then DEL of every variant, in a rotating order."""
    times: dict[str, dict[str, list[float]]] = {
        v.label: {"ADD": [], "DEL": [], "ADD_cpu": [], "DEL_cpu": [], "ADD_cpu_own": []} for v in variants
    }
    failures = {v.label: 0 for v in variants}
    for i in range(n):
        order = variants[i % len(variants) :] + variants[: i % len(variants)]
        for v in order:
            conf = v.conf(dual)
            cid = support.unique("bench-")
            with pod_netns() as (path,):
                add = v.invoke("ADD", cid, path, json.dumps(conf).encode())
                if not add.ok:
                    failures[v.label] += 1
                    errors.append(fail_text(v.label, "ADD", add))
                    v.invoke("DEL", cid, path, json.dumps(conf).encode())
                    continue
                # The runtime's DEL carries the ADD's result (libcni's cache).
                del_conf = dict(conf, prevResult=json.loads(add.stdout))
                dele = v.invoke("DEL", cid, path, json.dumps(del_conf).encode())
                if not dele.ok:
                    failures[v.label] += 1
                    errors.append(fail_text(v.label, "DEL", dele))
                times[v.label]["ADD"].append(add.ms)
                times[v.label]["DEL"].append(dele.ms)
                times[v.label]["ADD_cpu"].append(add.cpu_ms)
                times[v.label]["DEL_cpu"].append(dele.cpu_ms)
                if add.ipam_cpu_ms is not None:
                    times[v.label]["ADD_cpu_own"].append(add.cpu_ms - add.ipam_cpu_ms)
    out: dict[str, Any] = {}
    for v in variants:
        out[v.label] = {
            "ADD": stats(times[v.label]["ADD"]),
            "DEL": stats(times[v.label]["DEL"]),
            "ADD_cpu": stats(times[v.label]["ADD_cpu"]),
            "DEL_cpu": stats(times[v.label]["DEL_cpu"]),
            # served only: client + request process, without the IPAM child (host-local) that cpuADD includes
            "ADD_cpu_own": stats(times[v.label]["ADD_cpu_own"]),
            "failures": failures[v.label],
            "leaked_leases": v.leases(),
            "leaked_state_files": v.state_files(),
        }
    out["leaked_host_links"] = host_links()
    return out


def ratios(result: dict[str, Any], variants: list[Variant]) -> dict[str, dict[str, float]]:
    base = result.get("ptp")
    out = {}
    for v in variants:
        if v.kind != "nsveth" or not base:
            continue
        r = {}
        for cmd in ("ADD", "DEL", "ADD_cpu", "DEL_cpu"):
            if result[v.label][cmd] and base[cmd]:
                r[cmd] = result[v.label][cmd]["median"] / base[cmd]["median"]
        out[v.label] = r
    return out


# ---------------------------------------------------------------- parallel
def parallel(v: Variant, count: int) -> dict[str, Any]:
    conf = v.conf(dual=False)
    cids = [support.unique("par-") for _ in range(count)]
    with pod_netns(count) as paths:
        before = set(host_links())

        def run_all(command: str, confs: list[bytes]) -> tuple[float, list[Call]]:
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
                calls = list(pool.map(lambda a: v.invoke(command, a[0], a[1], a[2]), zip(cids, paths, confs, strict=True)))
            return (time.monotonic() - t0) * 1e3, calls

        add_ms, adds = run_all("ADD", [json.dumps(conf).encode()] * count)
        added_links = len(set(host_links()) - before)
        leases_after_add = v.leases()
        del_confs = [
            json.dumps(dict(conf, prevResult=json.loads(a.stdout)) if a.ok else conf).encode() for a in adds
        ]
        del_ms, dels = run_all("DEL", del_confs)
        leaked_pod = sum(len(pod_links(p)) for p in paths)
        leaked_host = sorted(set(host_links()) - before)
    return {
        "parallel": count,
        "add_wall_ms": add_ms,
        "del_wall_ms": del_ms,
        "add_ok": sum(c.ok for c in adds),
        "del_ok": sum(c.ok for c in dels),
        "host_veths_after_add": added_links,
        "leases_after_add": leases_after_add,
        "leaks": {
            "host_links": len(leaked_host),
            "pod_links": leaked_pod,
            "leases": v.leases(),
            "state_files": v.state_files(),
        },
        "errors": [fail_text(v.label, "ADD", c) for c in adds if not c.ok][:3]
        + [fail_text(v.label, "DEL", c) for c in dels if not c.ok][:3],
    }


# --------------------------------------------------------------- peak RSS
def peak_rss(v: Variant, tmp: str, dual: bool = False) -> dict[str, Any]:
    """ru_maxrss via /usr/bin/time (a small parent, so the fork copies nothing big).

    `tree` is the largest process of the ADD (the plugin or its IPAM child,
    which starts as a copy of the plugin); nsveth also reports its own.
    """
    conf = v.conf(dual)
    out = os.path.join(tmp, f"rss-{v.label}")
    timings = os.path.join(tmp, f"rss-timings-{v.label}")
    cid = support.unique("rss-")
    with pod_netns() as (path,):
        extra = {"NSVETH_TIMINGS": timings} if v.kind == "nsveth" else {}
        add = invoke(
            ["/usr/bin/time", "-f", "%M", "-o", out, *v.argv], env_for("ADD", cid, path, {**v.env, **extra}), json.dumps(conf).encode()
        )
        with open(out) as f:
            tree_kb = int(f.read().split()[-1])
        dele = v.invoke("DEL", cid, path, json.dumps(conf).encode())
    res: dict[str, Any] = {"ok": add.ok and dele.ok, "tree_max_mb": tree_kb / 1024}
    if v.kind == "nsveth" and os.path.exists(timings):
        with open(timings) as f:
            res["self_mb"] = json.loads(f.readline())["maxrss_kb"] / 1024  # served: the request's process
    return res


# --------------------------------------------------------------- breakdown
CATEGORIES = {
    "interpreter start": ["interpreter start"],
    "imports": ["import config", "import commands"],
    "config (decode + validation)": ["config"],
    "IPAM exec": ["ipam"],
    "netlink": ["open netns", "veth", "host side", "pod side", "links"],
    "sysctls": ["sysctl host", "sysctl pod", "sysctl config", "sysctl restore"],
    "settle + announcement round": ["settle", "announce"],
    "state/lock": ["state adding", "state added", "lock", "state removed"],
    "result + exit": ["result", "exit", "process exit"],
}


def breakdown(v: Variant, n: int, tmp: str, dual: bool = False, cold: bool = False) -> dict[str, Any]:
    """Median duration of each marked phase over n ADD/DEL pairs (NSVETH_TIMINGS).

    cold=True makes every config a distinct byte string (trailing spaces), so
    no run can reuse an earlier validation.
    """
    phases: dict[str, dict[str, list[float]]] = {"ADD": {}, "DEL": {}}
    cpu: dict[str, dict[str, list[float]]] = {"ADD": {}, "DEL": {}}
    totals: dict[str, list[float]] = {"ADD": [], "DEL": []}
    for i in range(n):
        conf = json.dumps(v.conf(dual)) + (" " * (i + 1) if cold else "")
        cid = support.unique("bd-")
        with pod_netns() as (path,):
            add_file, del_file = (os.path.join(tmp, f"t-{cid}-{c}") for c in ("add", "del"))
            add = v.invoke("ADD", cid, path, conf.encode(), {"NSVETH_TIMINGS": add_file})
            if not add.ok:
                raise SystemExit(fail_text(v.label, "ADD (breakdown)", add))
            del_conf = json.dumps(dict(json.loads(conf), prevResult=json.loads(add.stdout)))
            dele = v.invoke("DEL", cid, path, del_conf.encode(), {"NSVETH_TIMINGS": del_file})
            for cmd, call, fname in (("ADD", add, add_file), ("DEL", dele, del_file)):
                with open(fname) as f:
                    records = [json.loads(line) for line in f]
                if v.server_log:
                    seq, cpus = served_timeline(records, call)
                else:
                    marks = records[0]["marks"]
                    seq = [("interpreter start", marks[0][1] - call.t0)]
                    seq += [(name, t - prev) for (_, prev, _), (name, t, _) in pairwise(marks)]
                    seq.append(("process exit", call.t1 - marks[-1][1]))
                    # CPU: before the first mark = the whole process's CPU at its first mark.
                    cpus = [("interpreter start", marks[0][2])]
                    cpus += [(name, c - prev) for (_, _, prev), (name, _, c) in pairwise(marks)]
                for name, ns in seq:
                    phases[cmd].setdefault(name, []).append(ns / 1e6)
                for name, ns in cpus:
                    cpu[cmd].setdefault(name, []).append(ns / 1e6)
                totals[cmd].append(call.ms)
    out: dict[str, Any] = {}
    for cmd in ("ADD", "DEL"):
        med = {name: statistics.median(vals) for name, vals in phases[cmd].items()}
        cats = {}
        for cat, names in CATEGORIES.items():
            present = [med[x] for x in names if x in med]
            if present:
                cats[cat] = sum(present)
        cpu_med = {name: statistics.median(vals) for name, vals in cpu[cmd].items()}
        out[cmd] = {
            "total_median_ms": statistics.median(totals[cmd]),
            "phases_ms": med,
            "categories_ms": cats,
            "phases_cpu_ms": cpu_med,
        }
    return out


def served_timeline(records: list[dict[str, Any]], call: Call) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """One served call as a single timeline: the client's marks and the request process's marks
    (both CLOCK_MONOTONIC), in time order, each phase named by the mark that ends it.

    Client: start (its interpreter is up), serve hello, serve sent, serve accepted, serve done, exit.
    Request: start (the server's fork), fork (the child runs), become caller (namespaces, fds,
    environment), then the command's own marks, exit."""
    client = next(r for r in records if r["command"].startswith("client "))
    request = next(r for r in records if not r["command"].startswith("client "))
    events = sorted(
        [("client " + n, t, c) for n, t, c in client["marks"]] + [("request " + n, t, c) for n, t, c in request["marks"]],
        key=lambda e: e[1],
    )
    seq = [("client interpreter start", events[0][1] - call.t0)]
    seq += [(name, t - prev) for (_, prev, _), (name, t, _) in pairwise(events)]
    seq.append(("client process exit", call.t1 - events[-1][1]))
    cpus = [("client interpreter start", client["marks"][0][2])]
    for prefix, marks in (("client ", client["marks"]), ("request ", request["marks"])):
        cpus += [(prefix + name, c - prev) for (_, _, prev), (name, _, c) in pairwise(marks)]
    return seq, cpus


# ------------------------------------------------------------------ report
def spawn_floor(n: int = 30) -> dict[str, float]:
    return stats([invoke(["/bin/true"], {}, b"").ms for _ in range(n)])


def fmt_row(cols: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cols, widths, strict=True)))


def print_table(report: dict[str, Any]) -> None:
    w = [22, 8, 8, 8, 8, 8, 8, 7, 7, 8, 8]
    for mode in ("single_stack", "dual_stack"):
        res = report.get(mode)
        if not res:
            continue
        print(f"\n== {mode.replace('_', '-')} side by side, N={report['params'][mode + '_n']} (ms) ==")
        print(fmt_row(["plugin", "ADD min", "ADD med", "ADD p95", "DEL min", "DEL med", "DEL p95", "xADD", "xDEL", "cpuADD", "cpuDEL"], w))
        for label, r in res["results"].items():
            if not isinstance(r, dict) or "ADD" not in r:
                continue
            ratio = res["ratio_vs_ptp"].get(label, {})
            a, d = r["ADD"], r["DEL"]
            print(
                fmt_row(
                    [
                        label + (f" ({r['failures']} failed)" if r["failures"] else ""),
                        f"{a.get('min', 0):.1f}", f"{a.get('median', 0):.1f}", f"{a.get('p95', 0):.1f}",
                        f"{d.get('min', 0):.1f}", f"{d.get('median', 0):.1f}", f"{d.get('p95', 0):.1f}",
                        f"{ratio['ADD']:.2f}" if "ADD" in ratio else "-",
                        f"{ratio['DEL']:.2f}" if "DEL" in ratio else "-",
                        f"{r['ADD_cpu'].get('median', 0):.1f}",
                        f"{r['DEL_cpu'].get('median', 0):.1f}",
                    ],
                    w,
                )
            )
        for label, r in res["results"].items():
            if isinstance(r, dict) and r.get("ADD_cpu_own", {}).get("median") is not None:
                print(
                    f"{label}: CPU per ADD without its IPAM child (client + request process) "
                    f"median {r['ADD_cpu_own']['median']:.1f} ms (cpuADD above includes host-local, as ptp's does)"
                )
    if report.get("parallel"):
        print(f"\n== {report['params']['parallel']} parallel ADDs then DELs ==")
        w2 = [22, 10, 10, 7, 7, 18]
        print(fmt_row(["plugin", "ADD wall", "DEL wall", "ADD ok", "DEL ok", "leaks h/p/l/s"], w2))
        for label, p in report["parallel"].items():
            lk = p["leaks"]
            print(fmt_row([label, f"{p['add_wall_ms']:.0f}", f"{p['del_wall_ms']:.0f}", p["add_ok"], p["del_ok"],
                           f"{lk['host_links']}/{lk['pod_links']}/{lk['leases']}/{lk['state_files']}"], w2))
    if report.get("peak_rss"):
        print("\n== peak RSS of one ADD (MB): tree = largest process incl. IPAM child; self = nsveth's own ==")
        for label, r in report["peak_rss"].items():
            self_mb = f"  self {r['self_mb']:.1f}" if "self_mb" in r else ""
            print(f"{label:22}  tree {r['tree_max_mb']:.1f}{self_mb}")
    for key, title in (("breakdown", "warm (validated config reused)"), ("breakdown_cold", "cold (every config new)")):
        for label, b in (report.get(key) or {}).items():
            for cmd in ("ADD", "DEL"):
                bd = b[cmd]
                n = report["params"]["breakdown_n"]
                print(f"\n== {label} {cmd} phases, {title}, median of {n}: total {bd['total_median_ms']:.1f} ms ==")
                print("  " + "  ".join(f"{k} {v:.1f}" for k, v in bd["phases_ms"].items()))
                print("  -> " + "; ".join(f"{k} {v:.1f}" for k, v in bd["categories_ms"].items()))
                print("  cpu: " + "  ".join(f"{k} {v:.1f}" for k, v in bd["phases_cpu_ms"].items()))
    print(f"\nspawn floor (/bin/true from this script): median {report['spawn_floor']['median']:.2f} ms")


# ------------------------------------------------------------------- main
def variants_for(args: argparse.Namespace, tmp: str) -> list[Variant]:
    found = [Variant("ptp", "ptp", [PTP], 0, tmp)]
    wanted = args.variants.split(",")
    candidates = {
        "onedir": [os.path.join(REPO, "dist", "nsveth", "nsveth")],
        "onefile": [os.path.join(REPO, "dist", "onefile", "nsveth")],
        "portable": [os.path.join(REPO, "dist", "portable", "nsveth", "nsveth")],  # scripts/build-portable.sh
        "source": [
            VENV_PY,
            "-c",
            f"import sys; sys.path.insert(0, {os.path.join(REPO, 'plugin')!r}); from nsveth.main import main; main()",
        ],
    }
    for extra in args.extra:
        name, _, path = extra.partition("=")
        candidates[name] = [path]
        wanted.append(name)
    for name in wanted:
        if name == "served":
            continue
        argv = candidates[name]
        if os.access(argv[0], os.X_OK):
            # No server: plugin mode tries the socket, finds none and runs in-process, as on a host without one.
            no_server = {"NSVETH_SOCKET": os.path.join(tmp, "no-server.sock")}
            found.append(Variant(f"nsveth-{name}", "nsveth", argv, len(found), tmp, no_server))
        else:
            print(f"skipping nsveth-{name}: {argv[0]} missing (./build.sh --onefile builds both)", file=sys.stderr)
    served = [("served", candidates["onedir"])] if "served" in wanted else []
    for extra in args.extra_served:
        name, _, path = extra.partition("=")
        served.append((f"served-{name}", [path]))
    for label, argv in served:
        # The build as a client of its own warm server (`nsveth serve`) started by inner().
        sock = os.path.join(tmp, label, "nsveth.sock")
        found.append(Variant(f"nsveth-{label}", "nsveth", argv, len(found), tmp, {"NSVETH_SOCKET": sock}))
    return found


@contextlib.contextmanager
def warm_server(variants: list[Variant]):
    """Run `nsveth serve` for each served variant for the whole run; stop them at the end."""
    with contextlib.ExitStack() as stack:
        for v in variants:
            if v.label.startswith("nsveth-served"):
                stack.enter_context(_one_server(v))
        yield


@contextlib.contextmanager
def _one_server(v: Variant):
    sock = v.env["NSVETH_SOCKET"]
    os.makedirs(os.path.dirname(sock), mode=0o700)
    server = support.Server(directory=os.path.dirname(sock), exe=v.argv[0])
    assert server.socket == sock
    v.server_log = server.log_path
    server.start()
    try:
        yield
    finally:
        server.stop()
        # The server's one-time lesson (how many pages its spares write ahead) belongs with the figures.
        for line in server.log().splitlines():
            if "learnt" in line:
                print(f"{v.label} server: {line}")


def inner(args: argparse.Namespace) -> int:
    tmp = tempfile.mkdtemp(prefix="nsveth-bench-")
    try:
        support.sh("ip", "link", "set", "lo", "up")
        variants = variants_for(args, tmp)
        with warm_server(variants):
            return measure(args, tmp, variants)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: str, variants: list[Variant]) -> int:
    nsv = [v for v in variants if v.kind == "nsveth"]
    errors: list[str] = []
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"kernel": os.uname().release, "cpus": os.cpu_count()},
        "params": {
            "single_stack_n": args.n,
            "dual_stack_n": args.dual,
            "parallel": args.parallel,
            "breakdown_n": args.breakdown,
            "cniVersion": SPEC,
        },
        "variants": {v.label: v.argv[0] for v in variants},
        "spawn_floor": spawn_floor(),
    }
    # Warm-up: page cache, host-local's data dir, nsveth's caches; not counted.
    side_by_side(variants, 2, False, [])
    if args.n:
        res = side_by_side(variants, args.n, False, errors)
        report["single_stack"] = {"results": res, "ratio_vs_ptp": ratios(res, variants)}
    if args.dual:
        side_by_side(variants, 1, True, [])
        res = side_by_side(variants, args.dual, True, errors)
        report["dual_stack"] = {"results": res, "ratio_vs_ptp": ratios(res, variants)}
    if args.parallel:
        report["parallel"] = {v.label: parallel(v, args.parallel) for v in variants}
    report["peak_rss"] = {v.label: peak_rss(v, tmp) for v in variants}
    if args.breakdown:
        report["breakdown"] = {v.label: breakdown(v, args.breakdown, tmp) for v in nsv}
        report["breakdown_cold"] = {v.label: breakdown(v, args.breakdown, tmp, cold=True) for v in nsv}
    report["errors"] = errors[:20]
    print_table(report)
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=40, help="single-stack ADD/DEL rounds per plugin (default 40)")
    ap.add_argument("--dual", type=int, default=8, help="dual-stack rounds (ptp waits ~1-2 s for DAD each; default 8)")
    ap.add_argument("--parallel", type=int, default=50, help="parallel ADDs then DELs (default 50, 0 skips)")
    ap.add_argument("--breakdown", type=int, default=15, help="runs for nsveth's phase breakdown (default 15)")
    ap.add_argument(
        "--variants",
        default="onedir,onefile,served",
        help="nsveth builds: onedir,onefile,portable,source,served (served: the one-dir build as a client"
        " of a warm `nsveth serve`; portable: dist/portable/nsveth; default onedir,onefile,served)",
    )
    ap.add_argument(
        "--extra", action="append", default=[], metavar="NAME=PATH", help="another nsveth executable to compare (A/B of builds)"
    )
    ap.add_argument(
        "--extra-served",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another one-dir build, as a client of its own warm server (A/B of served builds)",
    )
    ap.add_argument("--json", default=os.path.join(REPO, "bench", "results.json"), help="where to write the figures")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not os.access(PTP, os.X_OK):
        print(f"bench: {PTP} missing (Debian package containernetworking-plugins)", file=sys.stderr)
        return 2
    if os.environ.get(INNER) == "1":
        return inner(args)
    host = support.netns_add("nsvbh-")
    try:
        env = dict(os.environ, **{INNER: "1"})
        return subprocess.run(["ip", "netns", "exec", host, sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env).returncode
    finally:
        support.netns_delete(host)


if __name__ == "__main__":
    sys.exit(main())
