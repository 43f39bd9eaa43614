"""nsveth on the kubelet path: a private containerd's CRI driven by the project's own CRI client.

kubelet never execs a CNI plugin: it calls RunPodSandbox / StopPodSandbox / RemovePodSandbox and
containerd's CRI plugin runs the conflist through go-cni (a `cni-loopback` network in parallel,
CNI_ARGS with K8S_*, capabilities as Go field names, DEL three times, the last two with an empty
CNI_NETNS and no prevResult, and always with the conflist of DEL time). These tests make the same
calls in the same order.

Isolation: containerd runs in a Sandbox (cnienv): the env's throwaway host netns, so pod traffic,
host veths, routes and rules never touch the machine, and a private mount namespace where
/run/netns (the pod netns bind mounts) and /var/lib/cni (go-cni's cache) are the test's own
directories. Its root, state, socket and config are private too. Every plugin in the CNI bin dir
is a logging shim that records each call (environment, stdin, stdout, exit status).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cnienv
import grpc
import pytest
import support
from attachment_checks import assert_no_new_rules
from cnienv import CniEnv, Sandbox
from cri import RuntimeService

pytestmark = pytest.mark.e2e

BUSYBOX_REF = "localhost/nsveth-e2e-busybox:latest"
PAUSE_REF = "localhost/nsveth-e2e-pause:latest"

# The CRI plugin section of the private containerd (cnienv.containerd_config).
_CRI_CONFIG = """\
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # root here lacks CAP_SYS_RESOURCE: without this runc fails with only
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""

# Records one plugin call in its own directory, passes stdin, stdout and the exit status through.
_SHIM = """\
#!/bin/sh
d=$(/usr/bin/mktemp -d {log_dir}/call.XXXXXXXX)
/usr/bin/date +%s%N > "$d/start"
/usr/bin/env > "$d/env"
/usr/bin/tee "$d/stdin" | {real} "$@" > "$d/stdout"
rc=$?
/usr/bin/cat "$d/stdout"
echo "{name} $rc $(/usr/bin/date +%s%N)" > "$d/meta"
exit $rc
"""


@dataclass
class Call:
    plugin: str
    command: str
    ifname: str
    netns: str
    args: str
    status: int
    start: int
    stdin: dict[str, Any] | None
    stdout: str

    @property
    def network(self) -> str | None:
        return (self.stdin or {}).get("name")


@pytest.fixture(scope="session")
def cri_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("cri-images")
    return [cnienv.build_busybox_image(d / "busybox.tar", BUSYBOX_REF),
            cnienv.build_busybox_image(d / "pause.tar", PAUSE_REF, cmd=("/bin/sleep", "2147483647"))]


class CriContainerd:
    """A private containerd with its CRI plugin, in a Sandbox on the env's host netns."""

    def __init__(self, env: CniEnv, images: list[Path], serve_socket: str = "off") -> None:
        self.env = env
        self.root = env.root / "containerd"
        self.root.mkdir()
        self.calls_dir = env.root / "calls"
        self.calls_dir.mkdir()
        self.bin_dir = env.root / "cri-bin"
        self.bin_dir.mkdir()
        for plugin in sorted(env.plugin_dir.iterdir()):
            shim = self.bin_dir / plugin.name
            shim.write_text(_SHIM.format(log_dir=self.calls_dir, real=plugin.resolve(), name=plugin.name))
            shim.chmod(0o755)
        self.netns_dir = env.root / "netns"
        self.netns_dir.mkdir()
        self.cgroup_parent = "/" + support.unique("nsve2e-cri-")
        self.log = self.root / "containerd.log"
        config = self.root / "config.toml"
        config.write_text(cnienv.containerd_config(
            self.root, cri=_CRI_CONFIG.format(pause=PAUSE_REF, bin_dir=self.bin_dir, conf_dir=env.conf_dir)))
        self.sandbox = Sandbox(env.host_ns, {"/run/netns": self.netns_dir, "/var/lib/cni": env.cache_dir},
                               env.root / "sandbox")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pods: list[str] = []
        try:
            # containerd hands its environment to the plugins it runs (libcni adds the CNI_* variables):
            # NSVETH_SOCKET names the warm server that nsveth hands its requests to, or "off".
            self.proc = self.sandbox.popen("containerd", "--config", config, log=self.log,
                                           env={**os.environ, "NSVETH_SOCKET": serve_socket})
            self.socket = self.root / "containerd.sock"
            self.cri = RuntimeService(self.socket)
            self.cri.wait_ready()
            for image in images:
                self.sandbox.run("ctr", "--address", self.socket, "--namespace", "k8s.io", "image", "import", image)
        except BaseException:
            self.close()
            raise

    # ---- kubelet's calls
    def pod_config(self, name: str, port_mappings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        uid = str(uuid.uuid4())
        log_dir = self.env.root / "pods" / f"default_{name}_{uid}"
        log_dir.mkdir(parents=True)  # kubelet makes it; containerd does not
        return {"metadata": {"name": name, "uid": uid, "namespace": "default", "attempt": 0},
                "hostname": name, "log_directory": str(log_dir), "port_mappings": port_mappings or [],
                "labels": {"io.kubernetes.pod.name": name},
                "linux": {"cgroup_parent": self.cgroup_parent}}

    def run_pod(self, config: dict[str, Any]) -> str:
        pod = self.cri.call("RunPodSandbox", config=config).pod_sandbox_id
        self.pods.append(pod)
        return pod

    def start_container(self, pod: str, config: dict[str, Any]) -> str:
        container = self.cri.call("CreateContainer", pod_sandbox_id=pod, sandbox_config=config, config={
            "metadata": {"name": "pinger", "attempt": 0}, "image": {"image": BUSYBOX_REF},
            "command": ["/bin/sleep", "3600"], "log_path": "pinger/0.log"}).container_id
        self.cri.call("StartContainer", container_id=container)
        return container

    def exec(self, container: str, *cmd: str) -> tuple[int, str]:
        reply = self.cri.call("ExecSync", container_id=container, cmd=list(cmd), timeout=20)
        return reply.exit_code, (reply.stdout + reply.stderr).decode(errors="replace")

    def remove_container(self, container: str) -> None:
        # A grace period as kubelet gives one: containerd 1.6 fails StopContainer with timeout 0
        # ("failed to kill container: context deadline exceeded") without trying.
        self.cri.call("StopContainer", container_id=container, timeout=1)
        self.cri.call("RemoveContainer", container_id=container)

    def tear_down_pod(self, pod: str) -> None:
        """kubelet: StopPodSandbox (and again, as its sync loop does), then RemovePodSandbox."""
        self.cri.call("StopPodSandbox", pod_sandbox_id=pod)
        self.cri.call("StopPodSandbox", pod_sandbox_id=pod)
        self.cri.call("RemovePodSandbox", pod_sandbox_id=pod)
        self.pods.remove(pod)

    # ---- what the plugins saw
    def calls(self) -> list[Call]:
        out = []
        for d in self.calls_dir.iterdir():
            if not (d / "meta").exists():
                continue  # still running
            name, status, _ = (d / "meta").read_text().split()
            env = dict(line.split("=", 1) for line in (d / "env").read_text().splitlines() if "=" in line)
            raw = (d / "stdin").read_text() if (d / "stdin").exists() else ""
            try:
                stdin = json.loads(raw) if raw.strip() else None
            except ValueError:
                stdin = None
            out.append(Call(name, env.get("CNI_COMMAND", ""), env.get("CNI_IFNAME", ""), env.get("CNI_NETNS", ""),
                            env.get("CNI_ARGS", ""), int(status), int((d / "start").read_text()), stdin,
                            (d / "stdout").read_text()))
        return sorted(out, key=lambda c: c.start)

    def processes_mentioning(self, text: str) -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and int(pid) != os.getpid():
                found.append(f"{pid}: {cmdline}")
        return found

    def close(self) -> None:
        try:
            for pod in list(self.pods):  # a failed test's pod: best effort, as kubelet would retry
                for rpc in ("StopPodSandbox", "RemovePodSandbox"):
                    try:
                        self.cri.call(rpc, timeout=30, pod_sandbox_id=pod)
                    except grpc.RpcError:
                        pass
            if hasattr(self, "cri"):
                self.cri.close()
        finally:
            if self.proc is not None:
                support.stop(self.proc)
            # Shims run in their own session and outlive containerd: end those of this daemon.
            for line in self.processes_mentioning(str(self.root)):
                try:
                    os.kill(int(line.split(":")[0]), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            # Container processes outlive a killed shim: end whatever is left in the pods' cgroups.
            for _ in range(3):
                pids = [pid for procs in Path("/sys/fs/cgroup/pids").glob(f".{self.cgroup_parent}/**/cgroup.procs")
                        for pid in procs.read_text().split()]
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if not pids:
                    break
                time.sleep(0.2)
            self.sandbox.close()  # its mount namespace (snapshots, pod netns mounts) goes with it
            support.remove_cgroups(f"*{self.cgroup_parent}/**")
            support.remove_cgroups(f"*{self.cgroup_parent}")


@pytest.fixture
def make_containerd(env: CniEnv, cri_images: list[Path]) -> Iterator[Any]:
    daemons: list[CriContainerd] = []

    def make(serve_socket: str = "off") -> CriContainerd:
        daemons.append(CriContainerd(env, cri_images, serve_socket))
        return daemons[-1]

    try:
        yield make
    finally:
        for d in daemons:
            # Shown by pytest when the test failed.
            # NSVETH_E2E_CONTAINERD_LOG=1: every line, not only warnings and errors.
            everything = bool(os.environ.get("NSVETH_E2E_CONTAINERD_LOG"))
            print(f"--- {d.log}")
            print("\n".join(line for line in d.log.read_text(errors="replace").splitlines()
                            if everything or "level=warn" in line or "level=error" in line)[-20000:])
            d.close()


# --------------------------------------------------------------------------- configs

SUBNET4 = "10.206.0.0/24"
SUBNET6 = "fd00:206::/64"
HOST_PORT, POD_PORT = 18080, 8080


def _ipam(*subnets: str, data_dir: Path | None = None) -> dict[str, Any]:
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": s}] for s in subnets],
                            "routes": [{"dst": "::/0" if ":" in s else "0.0.0.0/0"} for s in subnets]}
    if data_dir:
        ipam["dataDir"] = str(data_dir)
    return ipam


def variant_conflist(variant: str) -> dict[str, Any]:
    main: dict[str, Any] = {"type": "nsveth", "ipam": _ipam(SUBNET4)}
    plugins = [main]
    if variant == "bridge":
        main.update(mode="bridge", bridge=support.unique("nsvb"), isGateway=True)
    elif variant == "dual-stack":
        main["ipam"] = _ipam(SUBNET4, SUBNET6)
    elif variant == "tuning+portmap":
        plugins += [{"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.log_martians": "1"}},
                    {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}]
    return {"cniVersion": "1.0.0", "name": support.unique("cri-"), "plugins": plugins}


# --------------------------------------------------------------------------- checks

def _chain_dels(calls: list[Call], chain: list[str]) -> list[list[str]]:
    """The DELs of eth0 by the chain's plugins, split into rounds (each starts with the chain's last plugin)."""
    rounds: list[list[str]] = []
    for c in calls:
        if c.command == "DEL" and c.ifname == "eth0" and c.plugin in chain:
            if c.plugin == chain[-1] or not rounds:
                rounds.append([])
            rounds[-1].append(c.plugin)
    return rounds


def _pod_ips(result: dict[str, Any]) -> tuple[str, list[str]]:
    """containerd's choice: the first IPv4 address of eth0 is the pod IP, the rest are additional."""
    eth0 = {i for i, iface in enumerate(result["interfaces"]) if iface["name"] == "eth0" and iface.get("sandbox")}
    ips = [str(ipaddress.ip_interface(ip["address"]).ip) for ip in result["ips"] if ip.get("interface") in eth0]
    v4 = [ip for ip in ips if ":" not in ip]
    first = (v4 or ips)[0]
    return first, [ip for ip in ips if ip != first]


def _assert_nothing_left(env: CniEnv, daemon: CriContainerd, pod: str, networks: list[str], pod_ips: list[str],
                         fw_before: dict[str, list[str]], ipam_dirs: list[Path]) -> None:
    assert env.host_veths() == []
    for network in networks:
        for ipam_dir in ipam_dirs:
            assert env.leases(network, ipam_dir) == {}, (network, ipam_dir)
        assert env.records(network) == []
    host_routes = cnienv.routes(env.host_ns, "-4") + cnienv.routes(env.host_ns, "-6")
    assert not [r for r in host_routes if r.get("dst") in pod_ips], host_routes
    assert_no_new_rules(fw_before, cnienv.firewall_snapshot(env.host_ns))
    assert list(daemon.netns_dir.iterdir()) == []  # containerd removed the pod netns
    results = env.cache_dir / "results"
    assert not results.exists() or list(results.iterdir()) == []  # go-cni's cache
    assert daemon.processes_mentioning(pod) == []  # no pause process, no shim


# --------------------------------------------------------------------------- tests

@pytest.mark.parametrize("mode", ["inproc", "served"])
@pytest.mark.parametrize("variant", ["ptp", "bridge", "dual-stack", "tuning+portmap"])
def test_cri_pod_lifecycle(env: CniEnv, make_containerd: Any, variant: str, mode: str,
                           request: pytest.FixtureRequest) -> None:
    """kubelet's calls through containerd's CRI; `served`: every nsveth call is handed to a warm server."""
    conflist = variant_conflist(variant)
    env.write_conf(conflist)
    chain = [p["type"] for p in env.adapt(conflist)["plugins"]]  # nsveth, or NSVETH_E2E_PLUGIN
    if mode == "served" and chain[0] != "nsveth":
        pytest.skip("the warm server is nsveth's")
    server = request.getfixturevalue("nsveth_server") if mode == "served" else None
    served_before = server.served_count() if server else 0
    daemon = make_containerd(server.socket if server else "off")
    fw_before = cnienv.firewall_snapshot(env.host_ns)
    mappings = [{"protocol": "TCP", "container_port": POD_PORT, "host_port": HOST_PORT}] \
        if "portmap" in chain else []
    config = daemon.pod_config(support.unique("pod-"), mappings)

    pod = daemon.run_pod(config)
    status = daemon.cri.call("PodSandboxStatus", pod_sandbox_id=pod).status
    [add] = [c for c in daemon.calls() if c.plugin == chain[0] and c.command == "ADD"]
    assert add.status == 0 and add.ifname == "eth0", add
    result = json.loads(add.stdout)
    pod_ip, additional = _pod_ips(result)
    assert status.network.ip == pod_ip, (status, result)
    assert [a.ip for a in status.network.additional_ips] == additional, (status, result)
    assert bool(additional) == (variant == "dual-stack"), additional
    args = dict(kv.split("=", 1) for kv in add.args.split(";"))
    assert args["K8S_POD_NAME"] == config["metadata"]["name"] and args["K8S_POD_UID"] == config["metadata"]["uid"]
    assert args["K8S_POD_INFRA_CONTAINER_ID"] == pod and args["IgnoreUnknown"] == "1"
    if "portmap" in chain:
        [pm_add] = [c for c in daemon.calls() if c.plugin == "portmap" and c.command == "ADD"]
        assert pm_add.stdin["runtimeConfig"]["portMappings"] == [  # type: ignore[index]
            {"HostPort": HOST_PORT, "ContainerPort": POD_PORT, "Protocol": "tcp", "HostIP": ""}]
        nat = support.run(cnienv.in_ns(env.host_ns, "iptables-save", "-t", "nat")).stdout
        assert f"--dport {HOST_PORT}" in nat and f"{pod_ip}:{POD_PORT}" in nat, nat

    container = daemon.start_container(pod, config)
    for ip in result["ips"]:
        gateway = ip.get("gateway")
        if gateway:
            code, out = daemon.exec(container, "ping", "-c", "1", "-W", "3", gateway)
            assert code == 0, out
    code, out = daemon.exec(container, "ip", "-o", "addr", "show", "dev", "eth0")
    assert code == 0 and f"inet {pod_ip}/" in out, out
    if "tuning" in chain:
        assert daemon.exec(container, "cat", "/proc/sys/net/ipv4/conf/eth0/log_martians") == (0, "1\n")

    daemon.remove_container(container)
    daemon.tear_down_pod(pod)

    calls = daemon.calls()
    failed = [c for c in calls if c.status != 0]
    assert not failed, failed
    assert any(c.plugin == "loopback" and c.command == "ADD" for c in calls)
    print("plugin calls:", *(f"{c.plugin} {c.command} {c.ifname} netns={c.netns!r} "
                             f"prevResult={'prevResult' in (c.stdin or {})} status={c.status}" for c in calls),
          sep="\n  ")
    # DEL in reverse chain order, three times: StopPodSandbox with the netns and the cached
    # prevResult, then kubelet's second stop and RemovePodSandbox with neither.
    assert _chain_dels(calls, chain) == [chain[::-1]] * 3
    dels = [c for c in calls if c.command == "DEL" and c.plugin == chain[0]]
    assert [(bool(c.netns), "prevResult" in (c.stdin or {})) for c in dels] == [(True, True)] + [(False, False)] * 2
    _assert_nothing_left(env, daemon, pod, [conflist["name"]], [pod_ip, *additional], fw_before, [env.ipam_dir])
    assert not [n for n in os.listdir("/run/netns") if n.startswith("cni-")]  # nothing reached the machine's
    if server is not None:
        # ADD and the three DELs of this pod, each run by the server (one log line per request).
        nsveth_calls = [c for c in calls if c.plugin == "nsveth"]
        served = server.served_count() - served_before
        assert served >= len(nsveth_calls) == 4, (served, nsveth_calls, server.log()[-2000:])


def _conflist_changed_under_running_pod(env: CniEnv, make_containerd: Any, plugin: str,
                                        ip_masq: bool = True) -> dict[str, Any]:
    """Run a pod on network A, replace the conflist in place with network B (new name and subnet),
    tear the pod down as kubelet does. Returns what the checks need ("error": the failed CRI call)."""
    before = {"cniVersion": "1.0.0", "name": support.unique("cri-a-"),
              "plugins": [{"type": plugin, "ipMasq": ip_masq, "ipam": _ipam("10.207.0.0/24")}]}
    path = env.write_conf(before)
    daemon = make_containerd()
    fw_before = cnienv.firewall_snapshot(env.host_ns)
    pod = daemon.run_pod(daemon.pod_config(support.unique("pod-")))
    pod_ip = daemon.cri.call("PodSandboxStatus", pod_sandbox_id=pod).status.network.ip
    assert list(env.leases(before["name"])) == [pod_ip]

    after = {"cniVersion": "1.0.0", "name": support.unique("cri-b-"),
             "plugins": [{"type": plugin, "ipMasq": ip_masq, "ipam": _ipam("10.208.0.0/24")}]}
    # In place: containerd's watcher notices a write, not a rename into the directory.
    seen = daemon.log.read_text().count("receiving change event from cni conf dir")
    path.write_text(json.dumps(env.adapt(after), indent=2))
    deadline = time.monotonic() + 10
    while daemon.log.read_text().count("receiving change event from cni conf dir") == seen:
        assert time.monotonic() < deadline, "containerd did not notice the new conflist"
        time.sleep(0.05)
    time.sleep(0.5)  # the reload follows the event

    error = None
    try:
        daemon.tear_down_pod(pod)
    except grpc.RpcError as e:
        error = e
    dels = [c for c in daemon.calls() if c.command == "DEL" and c.plugin == plugin]
    assert dels and all(c.network == after["name"] for c in dels), [c.network for c in dels]
    return {"before": before, "after": after, "pod": pod, "pod_ip": pod_ip, "fw_before": fw_before,
            "daemon": daemon, "error": error}


def _old_cache_entry(env: CniEnv, network: str) -> list[str]:
    """go-cni's cached result of the old network: libcni deletes only the entry of the network
    it DELs, so this stays whatever the plugin does (the runtime's file, not the plugin's)."""
    results = env.cache_dir / "results"
    return sorted(p.name for p in results.iterdir()) if results.exists() else []


def test_cri_conflist_changed_under_running_pod(env: CniEnv, make_containerd: Any) -> None:
    """An operator replaces the conflist while a pod runs; containerd DELs with the new one.
    Nothing of the attachment ADD made remains: lease, veth, route, masquerade rule, record."""
    facts = _conflist_changed_under_running_pod(env, make_containerd, "nsveth")
    assert facts["error"] is None, facts["error"]
    assert not [c for c in facts["daemon"].calls() if c.status != 0]
    old, new = facts["before"]["name"], facts["after"]["name"]
    [cached] = _old_cache_entry(env, old)
    assert cached.startswith(f"{old}-")
    (env.cache_dir / "results" / cached).unlink()
    _assert_nothing_left(env, facts["daemon"], facts["pod"], [old, new], [facts["pod_ip"]], facts["fw_before"],
                         [env.ipam_dir])


@pytest.mark.parametrize("ip_masq", [False, True], ids=["plain", "ipMasq"])
def test_reference_ptp_leaks_after_conflist_change(env: CniEnv, make_containerd: Any, ip_masq: bool) -> None:
    """Documents the reference ptp plugin in the same scenario (not nsveth's behaviour): its DEL
    acts on the new network only. Plain, the old network's lease leaks; with ipMasq, DEL fails on
    the new name's missing masquerade chain, so StopPodSandbox fails and kubelet would never
    remove the pod (the fixture's teardown kills what is left)."""
    facts = _conflist_changed_under_running_pod(env, make_containerd, "ptp", ip_masq)
    assert list(env.leases(facts["before"]["name"])) == [facts["pod_ip"]]  # leaked
    if ip_masq:
        assert facts["error"] is not None and "failed to destroy network" in facts["error"].details()
    else:
        assert facts["error"] is None
        assert env.host_veths() == []  # the veth went with the pod netns
