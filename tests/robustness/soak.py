#!/usr/bin/env python3
"""Soak: many ADD/CHECK/DEL cycles, several at a time, across a mix of configs; zero failures, zero leaks.

    sudo .venv/bin/python tests/robustness/soak.py --cycles 500 --parallel 8 \
        --configs ptp,dual,v6,bridge,sysctl,masq [--mode exe|inproc] [--crash-every 25] [--gc-interval 2]

Everything happens inside a throwaway host netns with one throwaway pod netns
per cycle. Each config is its own network (name, subnet, IPAM dataDir,
runtimeDir), as several networks on one node. While the cycles run:
- every --crash-every-th cycle (exe mode) is an ADD killed by SIGKILL at a
  random crash point (NSVETH_TEST_CRASH_AT) and never DELeted: the runtime
  "forgot" it, and the periodic GC must release it;
- the sysctl config sets a pod-wide sysctl (hoststate.POD_WIDE_SYSCTL) as
  well as a per-interface one: after each DEL the pod netns must have its
  original value back (a killed ADD left to GC is not checked: GC does not
  restore sysctls, the netns path of a stale record is not trusted);
- a GC per network runs every --gc-interval seconds, listing as valid every
  attachment submitted and not yet deleted (what a runtime knows: it knows a
  pod before it calls ADD): it must never touch them (a CHECK after it would
  fail).
At the end a final GC per network with an empty list, then the leak checks:
no host veth, no lease, no state record, no stray state-dir entries, no pod
netns, no process started by the plugin, and the soak process's own open fd
count (which holds everything the in-process mode leaks) and the state dir
entry count not growing between the first tenth of the run and the end.

Prints the figures; exit status 0 only with zero failures and zero leaks.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path[:0] = [HERE, TESTS, os.path.join(os.path.dirname(TESTS), "plugin")]

import hoststate  # noqa: E402
import support  # noqa: E402

CRASH_POINTS = ("after-state", "after-ipam", "after-veth", "after-host", "after-addresses")
BRIDGE = hoststate.NODE_BRIDGE
CONFIGS = ("ptp", "dual", "v6", "bridge", "sysctl", "masq")


def network(kind: str, n: int, root: str) -> support.Network:
    subnets = {
        "ptp": ["10.{}.0.0/22"],
        "dual": ["10.{}.0.0/22", "fd00:{}::/64"],
        "v6": ["fd00:{}::/64"],
        "bridge": ["10.{}.0.0/22"],
        "sysctl": ["10.{}.0.0/22"],
        "masq": ["10.{}.0.0/22"],
    }[kind]
    net = support.Network(os.path.join(root, kind))
    net.subnets = [s.format(150 + n) for s in subnets]  # type: ignore[attr-defined]
    net.kind = kind  # type: ignore[attr-defined]
    return net


def conf_of(net: support.Network) -> dict[str, Any]:
    kind = net.kind  # type: ignore[attr-defined]
    version = {"ptp": "1.0.0", "dual": "1.1.0", "v6": "0.4.0", "bridge": "1.0.0", "sysctl": "1.1.0", "masq": "0.3.1"}[kind]
    extra: dict[str, Any] = {}
    if kind == "bridge":
        extra = {"mode": "bridge", "bridge": BRIDGE}
    elif kind == "sysctl":
        extra = {"sysctl": {"net.ipv4.conf.eth0.arp_notify": "1", hoststate.POD_WIDE_SYSCTL: hoststate.POD_WIDE_VALUE}}
    elif kind == "masq":
        extra = {"ipMasq": True, "advertise": {"count": 1, "intervalMs": 100}}
    return net.conf(version, subnets=net.subnets, **extra)  # type: ignore[attr-defined]


class Soak:
    def __init__(self, args: argparse.Namespace, root: str) -> None:
        self.args = args
        self.root = root
        self.host = support.Netns("nsvsoak-")
        hoststate.make_node(self.host.name)  # forwarding on, a bridge, the masquerade table
        self.plugin = support.Plugin(self.host, args.mode)
        self.nets = [network(kind, i, root) for i, kind in enumerate(args.configs)]
        self.tag = support.unique("nsveth-soak-")
        self.pod_prefix = support.unique("nsvs") + "-"  # this run's pod netns, told apart from any other run
        self.lock = threading.Lock()
        self.live: set[tuple[int, str]] = set()  # (network index, container id) the "runtime" knows
        self.next_cycle = 0
        self.failures: list[str] = []
        self.latency: dict[str, list[float]] = {c: [] for c in ("ADD", "CHECK", "DEL", "GC")}
        self.crashes = 0
        self.gcs = 0
        self.done = threading.Event()
        self.samples: list[tuple[int, int, int]] = []  # (cycles done, fds, state dir entries)
        self.cycles_done = 0

    # ------------------------------------------------------------ helpers
    def call(self, command: str, conf: dict, **kw: str) -> support.Reply:
        env = self.plugin.env(command, NSVETH_TEST_TAG=self.tag, **kw)
        t0 = time.monotonic()
        reply = self.plugin.call(env, conf)
        if command in self.latency and "NSVETH_TEST_CRASH_AT" not in kw:
            with self.lock:
                self.latency[command].append(time.monotonic() - t0)
        return reply

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)
        print(f"FAIL {what}", file=sys.stderr, flush=True)

    def state_entries(self) -> int:
        """Entries under the runtime dirs, attachment records and sender locks (live pods) excluded, and the
        validation cache too: it is bounded by design (256 slots, tests/unit/test_validation_cache.py)
        and fills as distinct configs (per-pod args) are first seen."""
        return sum(
            len(dirs) + len([f for f in files if not f.endswith((".json", ".sender")) or root.endswith(".delegates")])
            for net in self.nets
            for root, dirs, files in os.walk(net.runtime_dir)
            if not root.endswith("/.validated")
        )

    def sample(self) -> None:
        fds = len(os.listdir("/proc/self/fd"))
        self.samples.append((self.cycles_done, fds, self.state_entries()))

    def quiescent(self) -> tuple[int, int]:
        """(open fds of this process, state dir entries) while no command runs."""
        return len(os.listdir("/proc/self/fd")), self.state_entries()

    # -------------------------------------------------------------- cycle
    def cycle(self, n: int) -> None:
        idx = n % len(self.nets)
        net = self.nets[idx]
        conf = conf_of(net)
        cid = f"soak{n}"
        crash = self.args.mode == "exe" and self.args.crash_every and n >= 0 and n % self.args.crash_every == self.args.crash_every - 1
        ns = support.Netns(self.pod_prefix)
        try:
            with self.lock:
                self.live.add((idx, cid))  # (already there when submitted by run())
            if crash:
                point = random.Random(n).choice(CRASH_POINTS)
                r = self.call("ADD", conf, container_id=cid, netns=ns.path, NSVETH_TEST_CRASH_AT=point)
                if r.status != -9:
                    self.fail(f"cycle {n}: ADD with crash at {point} was not killed: {r.status} {r.stdout[:300]!r}")
                with self.lock:
                    self.crashes += 1
                    self.live.discard((idx, cid))  # forgotten by the runtime: GC's job now
                return
            sets_pod_wide = hoststate.POD_WIDE_SYSCTL in conf.get("sysctl", {})
            original = hoststate.pod_wide_sysctl(ns.name) if sets_pod_wide else None
            add = self.call("ADD", conf, container_id=cid, netns=ns.path)
            if add.status != 0:
                self.fail(f"cycle {n} ({net.kind}): ADD: {add.stdout[:400]!r} {add.stderr[-400:]}")  # type: ignore[attr-defined]
                self.call("DEL", conf, container_id=cid, netns=ns.path)
                return
            prev = support.with_prev(conf, add.json)
            if conf["cniVersion"] >= "0.4.0":
                chk = self.call("CHECK", prev, container_id=cid, netns=ns.path)
                if chk.status != 0:
                    self.fail(f"cycle {n} ({net.kind}): CHECK: {chk.stdout[:400]!r}")  # type: ignore[attr-defined]
            dele = self.call("DEL", prev, container_id=cid, netns=ns.path)
            if dele.status != 0:
                self.fail(f"cycle {n} ({net.kind}): DEL: {dele.stdout[:400]!r}")  # type: ignore[attr-defined]
            elif sets_pod_wide and hoststate.pod_wide_sysctl(ns.name) != original:
                self.fail(f"cycle {n} ({net.kind}): DEL left {hoststate.POD_WIDE_SYSCTL} at "  # type: ignore[attr-defined]
                          f"{hoststate.pod_wide_sysctl(ns.name)!r}, not the original {original!r}")
            with self.lock:
                self.live.discard((idx, cid))
        except Exception as e:  # noqa: BLE001 - a harness error is a failure too
            self.fail(f"cycle {n}: {type(e).__name__}: {e}")
        finally:
            ns.delete()
            with self.lock:
                self.cycles_done += 1

    def gc_loop(self) -> None:
        while not self.done.wait(self.args.gc_interval):
            for idx, net in enumerate(self.nets):
                with self.lock:
                    # What a runtime knows: attachments in progress, and those it is about to start.
                    known = {cid for i, cid in self.live if i == idx}
                    known |= {f"soak{m}" for m in range(self.next_cycle, self.next_cycle + 8 * self.args.parallel)
                              if m % len(self.nets) == idx}
                gc_conf = {**conf_of(net), "cniVersion": "1.1.0",
                           "cni.dev/valid-attachments": [{"containerID": c, "ifname": "eth0"} for c in sorted(known)]}
                r = self.call("GC", gc_conf)
                with self.lock:
                    self.gcs += 1
                if r.status != 0:
                    self.fail(f"GC of {net.name}: {r.stdout[:400]!r}")

    def run(self) -> dict[str, Any]:
        before = hoststate.snapshot(self.host.name)
        # Warm-up: one cycle and one GC per network, one after the other, so every
        # lazily created file (lock, delegate cache) and import exists before the baseline.
        for n in range(-len(self.nets), 0):
            self.cycle(n)
        for net in self.nets:
            self.call("GC", {**conf_of(net), "cniVersion": "1.1.0", "cni.dev/valid-attachments": []})
        self.cycles_done = 0
        baseline = self.quiescent()
        t0 = time.monotonic()
        gc_thread = threading.Thread(target=self.gc_loop, daemon=True)
        gc_thread.start()
        tenth = max(1, self.args.cycles // 10)
        with concurrent.futures.ThreadPoolExecutor(self.args.parallel) as pool:
            pending: set[concurrent.futures.Future] = set()
            for n in range(self.args.cycles):
                while len(pending) >= self.args.parallel * 2:
                    finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                with self.lock:
                    # The runtime knows a pod before it calls ADD for it.
                    self.live.add((n % len(self.nets), f"soak{n}"))
                    self.next_cycle = n
                pending.add(pool.submit(self.cycle, n))
                if n % tenth == 0 and n:
                    self.sample()  # figures only: commands are running
            concurrent.futures.wait(pending)
        self.done.set()
        gc_thread.join()
        self.sample()
        elapsed = time.monotonic() - t0
        for net in self.nets:  # the runtime forgets everything: nothing may be left
            r = self.call("GC", {**conf_of(net), "cniVersion": "1.1.0", "cni.dev/valid-attachments": []})
            if r.status != 0:
                self.fail(f"final GC of {net.name}: {r.stdout[:400]!r}")
        return self.figures(before, baseline, self.quiescent(), elapsed)

    def figures(self, before: dict, baseline: tuple[int, int], end: tuple[int, int], elapsed: float) -> dict[str, Any]:
        leaks: list[str] = []
        veths = [n for n in self.host.links() if n.startswith("nsv")]
        if veths:
            leaks.append(f"host veths: {veths}")
        for net in self.nets:
            if net.leases():
                leaks.append(f"leases of {net.name}: {net.leases()}")
            if net.state_files():
                leaks.append(f"state records of {net.name}: {net.state_files()}")
            d = os.path.join(net.runtime_dir, net.name)
            stray = sorted(f for f in os.listdir(d) if f != "lock") if os.path.isdir(d) else []
            if stray:
                leaks.append(f"stray entries in {d}: {stray}")
        pods = [n for n in support.sh("ip", "netns", "list").stdout.split() if n.startswith(self.pod_prefix)]
        if pods:
            leaks.append(f"pod netns left: {pods}")
        procs = hoststate.processes_with(self.tag)
        if procs:
            leaks.append(f"plugin processes left: {procs}")
        changes = hoststate.diff(before, hoststate.snapshot(self.host.name))
        if changes:
            leaks.append(f"host netns changed: {changes}")
        if end[0] - baseline[0] > self.args.fd_slack:
            leaks.append(f"open fds grew from {baseline[0]} (after warm-up) to {end[0]}")
        if end[1] > baseline[1]:
            leaks.append(f"state dir entries grew from {baseline[1]} (after warm-up) to {end[1]}")

        def pct(values: list[float], q: float) -> float:
            return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

        ops = sum(len(v) for v in self.latency.values()) + self.crashes
        return {
            "mode": self.args.mode,
            "cycles": self.args.cycles,
            "parallel": self.args.parallel,
            "configs": list(self.args.configs),
            "operations": ops,
            "crash_injected_adds": self.crashes,
            "gc_runs": self.gcs + len(self.nets),
            "failures": len(self.failures),
            "leaks": leaks,
            "seconds": round(elapsed, 1),
            "ops_per_second": round(ops / elapsed, 1) if elapsed else 0,
            "latency_ms": {
                c: {"p50": round(pct(v, 0.5), 1), "p95": round(pct(v, 0.95), 1), "max": round(max(v) * 1000, 1) if v else 0, "n": len(v)}
                for c, v in self.latency.items()
            },
            "fds": {"after_warmup": baseline[0], "end": end[0], "during_run": [s[1] for s in self.samples]},
            "state_dir_entries": {"after_warmup": baseline[1], "end": end[1], "during_run": [s[2] for s in self.samples]},
            "first_failures": self.failures[:10],
        }

    def close(self) -> None:
        self.host.delete()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cycles", type=int, default=500)
    p.add_argument("--parallel", type=int, default=8)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {', '.join(CONFIGS)}")
    p.add_argument("--mode", choices=("exe", "inproc"), default="exe")
    p.add_argument("--crash-every", type=int, default=25, help="every Nth cycle is a killed ADD left to GC (exe mode; 0: none)")
    p.add_argument("--gc-interval", type=float, default=2.0, help="seconds between concurrent GCs")
    p.add_argument("--fd-slack", type=int, default=0, help="open fds allowed to grow from warm-up to the end")
    args = p.parse_args(argv)
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown or not args.configs:
        p.error(f"unknown configs {sorted(unknown)}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nsveth-soak-") as root:
        soak = Soak(args, root)
        try:
            return soak.run()
        finally:
            soak.close()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.mode == "exe" and not os.access(support.EXECUTABLE, os.X_OK):
        print(f"soak: {support.EXECUTABLE} is missing: run ./build.sh first", file=sys.stderr)
        return 2
    figures = run(args)
    print(json.dumps(figures, indent=2))
    ok = figures["failures"] == 0 and not figures["leaks"]
    print(f"soak: {'OK' if ok else 'FAILED'}: {figures['cycles']} cycles x {figures['parallel']} parallel, "
          f"{figures['operations']} operations, {figures['failures']} failures, {len(figures['leaks'])} leaks, "
          f"{figures['seconds']} s", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
