"""nsveth driven by containerd's own CNI library: a private containerd and `ctr run --cni`.

ctr reads CNI configs only from /etc/cni/net.d and plugins only from /opt/cni/bin, and keeps its
libcni cache in /var/lib/cni. containerd and ctr therefore run in a Sandbox: a private mount
namespace where those paths are this test's directories, inside the env's throwaway host netns, so
the host veth and routes live there and the machine is not touched.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cnienv
import pytest
import support
from attachment_checks import (
    assert_container_gone,
    assert_container_view,
    example_for_container,
    inside_script,
    ping,
)
from cnienv import CniEnv, Sandbox

pytestmark = pytest.mark.e2e

SUBNET = "10.204.0.0/24"
GATEWAY = "10.204.0.1"


class Containerd:
    def __init__(self, env: CniEnv, sandbox: Sandbox) -> None:
        self.root = env.root / "containerd"
        self.root.mkdir()
        self.socket = self.root / "containerd.sock"
        self.namespace = support.unique("nsve2e-")
        config = self.root / "config.toml"
        config.write_text(cnienv.containerd_config(self.root))
        self.log = self.root / "containerd.log"
        self.sandbox = sandbox
        self.proc = sandbox.popen("containerd", "--config", config, log=self.log)
        deadline = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"containerd did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def ctr_argv(self, *args: str | Path) -> list[str]:
        return self.sandbox.cmd("ctr", "--address", self.socket, "--namespace", self.namespace, *args)

    def ctr(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return support.run(self.ctr_argv(*args), check=check)

    def stop(self) -> None:
        # Best effort: remove what a failed test may have left, then stop the daemon.
        for kind in ("task", "container"):
            listing = self.ctr(kind, "ls", "-q", check=False).stdout.split() if self.proc.poll() is None else []
            for item in listing:
                if kind == "task":
                    self.ctr("task", "kill", "-s", "SIGKILL", item, check=False)
                    time.sleep(0.2)
                    self.ctr("task", "delete", "-f", item, check=False)
                else:
                    self.ctr("container", "delete", item, check=False)
        support.stop(self.proc)
        # Mounts of the daemon's snapshots live in the sandbox's mount namespace and go with it.
        # runc leaves the (empty) parent cgroup named after the containerd namespace.
        support.remove_cgroups(f"*/{self.namespace}")


@pytest.fixture
def containerd(env: CniEnv) -> Iterator[Containerd]:
    sandbox = Sandbox(env.host_ns, {**env.binds(), "/etc/cni/net.d": env.conf_dir, "/opt/cni/bin": env.plugin_dir},
                      env.root / "sandbox")
    try:
        daemon = Containerd(env, sandbox)
        try:
            yield daemon
        finally:
            daemon.stop()
    finally:
        sandbox.close()


def _conf(env: CniEnv, name: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{
        "type": "nsveth", "mtu": 1400,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": str(env.ipam_dir)}}]}


# The container reports its network, proves the gateway answers, then waits for one line on
# stdin so the test can inspect the host side while it is attached.
_INSIDE = (
    "echo '--- addr'; ip addr show eth0; echo '--- route'; ip route; "
    "echo '--- ping'; ping -c 1 -W 3 {gw} && echo PING-OK; echo READY; read line; echo BYE"
)


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == marker:
            return "".join(lines)
    proc.kill()
    rest = proc.communicate()
    raise AssertionError(f"no {marker!r} from the container; output:\n{''.join(lines)}{rest[0]}{rest[1]}")


def _wait_same_netns(pid: int, other: int, timeout: float = 10) -> None:
    """Until process pid has entered the netns of process other (nsenter has not yet when Popen returns)."""
    want = os.readlink(f"/proc/{other}/ns/net")
    deadline = time.monotonic() + timeout
    while os.readlink(f"/proc/{pid}/ns/net") != want:
        assert time.monotonic() < deadline, "holder did not enter the container's netns"
        time.sleep(0.01)


def test_ctr_run_cni(env: CniEnv, containerd: Containerd, busybox_image: tuple[Path, str]) -> None:
    archive, ref = busybox_image
    conf = _conf(env, support.unique("ctr-"))
    env.write_conf(conf)
    containerd.ctr("image", "import", archive)
    container = support.unique("c-")
    fw_before = cnienv.firewall_snapshot(env.host_ns)

    proc = subprocess.Popen(containerd.ctr_argv("run", "--rm", "--cni", ref, container,
                                                "sh", "-c", _INSIDE.format(gw=GATEWAY)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder: subprocess.Popen[bytes] | None = None
    try:
        out = _read_until(proc, "READY")
        # Inside: eth0 has an address of the subnet, a default route, the gateway answered.
        addrs = re.findall(r"inet (\S+) .*eth0", out)
        assert len(addrs) == 1, out
        pod_ip = ipaddress.ip_interface(addrs[0])
        assert pod_ip.network == ipaddress.ip_network(SUBNET), out
        assert re.search(rf"^default via {re.escape(GATEWAY)} dev eth0", out, re.M), out
        assert "PING-OK" in out, out
        assert "mtu 1400" in out, out

        # Host side, while attached: one veth in the host netns, the lease, reachability.
        assert len(env.host_veths()) == 1, env.host_veths()
        leases = env.leases(conf["name"])
        assert list(leases) == [str(pod_ip.ip)], leases
        assert container in leases[str(pod_ip.ip)], leases  # go-cni uses <namespace>-<id> as containerID
        ping(env.host_ns, str(pod_ip.ip))
        assert list((env.cache_dir / "results").iterdir()), "ctr's libcni wrote no cache entry"

        # Keep the container's netns alive past the task's exit. Otherwise the kernel would remove
        # the veth pair with the netns and the checks below would pass whatever the plugin did with
        # ctr's DEL, which comes with an empty CNI_NETNS.
        tasks = containerd.ctr("task", "ls").stdout
        [pid] = [line.split()[1] for line in tasks.splitlines() if line.split()[:1] == [container]]
        holder = subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", "sleep", "600"])
        _wait_same_netns(holder.pid, int(pid))

        assert proc.stdin is not None
        proc.stdin.write("done\n")
        proc.stdin.flush()
        out2, err = proc.communicate(timeout=60)
        pod_links = support.run(["nsenter", f"--net=/proc/{holder.pid}/ns/net", "ip", "-j", "link"]).stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if holder is not None:
            holder.kill()
            holder.wait()
    assert proc.returncode == 0, (out2, err)
    assert "BYE" in out2
    assert "eth0" not in {link["ifname"] for link in json.loads(pod_links)}, pod_links

    # After exit ctr ran DEL with an empty CNI_NETNS: nothing may remain.
    assert env.host_veths() == []
    assert env.leases(conf["name"]) == {}
    assert list((env.cache_dir / "results").iterdir()) == []
    host_routes = cnienv.routes(env.host_ns, "-4")
    assert not [r for r in host_routes if r.get("dst") == str(pod_ip.ip)], host_routes
    assert cnienv.firewall_snapshot(env.host_ns) == fw_before
    assert containerd.ctr("container", "ls", "-q").stdout.strip() == ""


@pytest.mark.parametrize("example", cnienv.example_params())
def test_ctr_conf_example(env: CniEnv, containerd: Containerd, busybox_image: tuple[Path, str],
                          example: Path | None) -> None:
    """Every example network, as shipped, works under containerd, outbound access included."""
    conf, expect = example_for_container(env, example)
    archive, ref = busybox_image
    containerd.ctr("image", "import", archive)
    fw_before = cnienv.firewall_snapshot(env.host_ns)

    proc = support.run(containerd.ctr_argv("run", "--rm", "--cni", ref, support.unique("c-"),
                                          "sh", "-c", inside_script(expect)))
    assert_container_view(proc.stdout, expect)

    assert_container_gone(env, conf, fw_before)
    assert list((env.cache_dir / "results").iterdir()) == []
