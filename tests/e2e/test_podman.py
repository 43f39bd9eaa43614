"""nsveth driven by podman's CNI backend (containers/common on Debian's libcni).

podman gets a private containers.conf (CONTAINERS_CONF) and storage.conf (CONTAINERS_STORAGE_CONF):
CNI backend, the env's plugin and config dirs, cgroupfs, file events, ulimits within this VM's hard
limits, storage and run dirs in the env. It runs in a Sandbox inside the env's host netns, with
private /var/lib/cni (libcni's cache) and /run/netns (podman's netns bind mounts).
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
    assert_no_new_rules,
    example_for_container,
    inside_script,
    ping,
)
from cnienv import CniEnv, Sandbox

pytestmark = pytest.mark.e2e

SUBNET = "10.205.0.0/24"
GATEWAY = "10.205.0.1"


class Podman:
    def __init__(self, env: CniEnv, sandbox: Sandbox) -> None:
        root = env.root / "podman"
        root.mkdir()
        containers_conf = root / "containers.conf"
        containers_conf.write_text(f"""\
[containers]
# podman's defaults (nofile/nproc 1048576 and more) exceed this machine's hard limits.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{env.plugin_dir}"]
network_config_dir = "{env.conf_dir}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
runtime = "runc"
tmp_dir = "{root}/tmp"
static_dir = "{root}/storage/libpod"
volume_path = "{root}/storage/volumes"
""")
        storage_conf = root / "storage.conf"
        storage_conf.write_text(f"""\
[storage]
driver = "overlay"
runroot = "{root}/runroot"
graphroot = "{root}/storage"
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(containers_conf),
                        CONTAINERS_STORAGE_CONF=str(storage_conf))
        self.sandbox = sandbox

    def __call__(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sandbox.run("podman", *args, env=self.env, check=check, timeout=180)


def _remove_libpod_cgroups() -> None:
    """podman's cgroupfs manager leaves libpod_parent/conmon behind in every hierarchy."""
    support.remove_cgroups("*/libpod_parent/conmon")
    support.remove_cgroups("*/libpod_parent")


@pytest.fixture
def podman(env: CniEnv) -> Iterator[Podman]:
    had_libpod_cgroup = any(Path("/sys/fs/cgroup").glob("*/libpod_parent"))
    netns_dir = env.root / "run-netns"
    netns_dir.mkdir()
    sandbox = Sandbox(env.host_ns, {**env.binds(), "/run/netns": netns_dir}, env.root / "sandbox")
    try:
        pm = Podman(env, sandbox)
        try:
            yield pm
        finally:
            pm("rm", "--all", "--force", "--time", "0", check=False)
            pm("system", "reset", "--force", check=False)
    finally:
        sandbox.close()
        if not had_libpod_cgroup:
            _remove_libpod_cgroups()


def _conf(env: CniEnv, name: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{
        "type": "nsveth", "mtu": 1400,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": str(env.ipam_dir)}}]}


def test_podman_run_on_nsveth_network(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str]) -> None:
    archive, ref = busybox_image
    conf = _conf(env, support.unique("pm-"))
    env.write_conf(conf)
    net = conf["name"]
    podman("load", "-i", archive)
    assert net in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    fw_before = cnienv.firewall_snapshot(env.host_ns)

    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", net, ref, "sleep", "600")
    info = json.loads(podman("inspect", name).stdout)[0]
    ip = info["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(SUBNET), info["NetworkSettings"]

    inside = podman("exec", name, "sh", "-c",
                    f"ip addr show eth0; ip route; ping -c 1 -W 3 {GATEWAY} && echo PING-OK").stdout
    assert re.search(rf"inet {re.escape(ip)}/24 .*eth0", inside), inside
    assert re.search(rf"^default via {re.escape(GATEWAY)} dev eth0", inside, re.M), inside
    assert "mtu 1400" in inside and "PING-OK" in inside, inside

    assert len(env.host_veths()) == 1, env.host_veths()
    leases = env.leases(net)
    assert list(leases) == [ip], leases
    assert leases[ip].split()[0] == info["Id"], leases
    ping(env.host_ns, ip)

    podman("rm", "--force", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(net) == {}
    cached = list((env.cache_dir / "results").glob(f"{net}-*"))
    assert cached == [], cached
    assert not [r for r in cnienv.routes(env.host_ns, "-4") if r.get("dst") == ip]
    assert cnienv.firewall_snapshot(env.host_ns) == fw_before


def test_podman_chain_with_port_mapping(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str]) -> None:
    """nsveth + tuning + portmap: podman passes portMappings, prevResult flows, rules go on rm."""
    archive, ref = busybox_image
    net = support.unique("pmc-")
    mac = "02:42:0a:cd:00:42"
    conf = _conf(env, net)
    conf["plugins"] += [{"type": "tuning", "mac": mac},
                        {"type": "portmap", "capabilities": {"portMappings": True}}]
    env.write_conf(conf)
    podman("load", "-i", archive)
    fw_before = cnienv.firewall_snapshot(env.host_ns)

    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", net, "-p", "18081:80", ref, "sh", "-c",
           "mkdir -p /www && echo hello-from-nsveth > /www/index.html && exec httpd -f -p 80 -h /www")
    info = json.loads(podman("inspect", name).stdout)[0]
    ip = info["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert info["NetworkSettings"]["Networks"][net]["MacAddress"] == mac, info["NetworkSettings"]
    assert podman("exec", name, "cat", "/sys/class/net/eth0/address").stdout.strip() == mac

    fw = cnienv.firewall_snapshot(env.host_ns)
    assert cnienv.firewall_lines_mentioning(fw, info["Id"]), "portmap added no rule for the container"
    # Through the mapped port from the host netns (DNAT to the pod over the nsveth link).
    # (busybox-static's wget crashes resolving names on the host, so Python's urllib is the client.)
    fetch = ("import sys, urllib.request; "
             "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
    proc = None
    for _ in range(30):
        proc = support.run(cnienv.in_ns(env.host_ns, "/usr/bin/python3", "-c", fetch, f"http://{GATEWAY}:18081/"),
                          check=False)
        if "hello-from-nsveth" in proc.stdout:
            break
        time.sleep(0.2)
    assert proc is not None and "hello-from-nsveth" in proc.stdout, (proc, fw["iptables-save"])

    podman("rm", "--force", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(net) == {}
    fw_after = cnienv.firewall_snapshot(env.host_ns)
    assert not cnienv.firewall_lines_mentioning(fw_after, info["Id"], ip), fw_after
    assert_no_new_rules(fw_before, fw_after)


def test_podman_restart_and_stop_start(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str]) -> None:
    """Teardown and setup again for the same container ID (deterministic host veth name) must work."""
    archive, ref = busybox_image
    conf = _conf(env, support.unique("pmr-"))
    env.write_conf(conf)
    net = conf["name"]
    podman("load", "-i", archive)
    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", net, ref, "sleep", "600")
    first = {v["ifname"] for v in env.host_veths()}
    assert len(first) == 1, first

    podman("restart", "--time", "0", name)
    assert len(env.host_veths()) == 1, env.host_veths()
    assert {v["ifname"] for v in env.host_veths()} == first  # same containerID + ifname, same name
    assert len(env.leases(net)) == 1, env.leases(net)
    podman("exec", name, "ping", "-c", "1", "-W", "3", GATEWAY)

    podman("stop", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(net) == {}
    podman("start", name)
    assert len(env.host_veths()) == 1
    podman("exec", name, "ping", "-c", "1", "-W", "3", GATEWAY)

    podman("rm", "--force", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(net) == {}


def test_podman_two_networks_static_ip_and_mac(env: CniEnv, podman: Podman,
                                                busybox_image: tuple[Path, str]) -> None:
    """podman's per-network options: ip= becomes runtimeConfig ips, mac= becomes CNI_ARGS MAC=
    (podman 4.3 passes it there, with IgnoreUnknown), which nsveth uses only with macFromArgs;
    two attachments, eth0 and eth1."""
    archive, ref = busybox_image
    a = _conf(env, support.unique("pma-"))
    a["plugins"][0]["capabilities"] = {"ips": True, "mac": True}
    a["plugins"][0]["macFromArgs"] = True
    b = _conf(env, support.unique("pmb-"))
    b["plugins"][0]["ipam"]["ranges"] = [[{"subnet": "10.215.0.0/24"}]]
    b["plugins"][0]["ipam"]["routes"] = [{"dst": "10.216.0.0/16"}]
    env.write_conf(a)
    env.write_conf(b)
    podman("load", "-i", archive)
    ip, mac = "10.205.0.50", "02:42:0a:cd:00:50"
    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", f"{a['name']}:ip={ip},mac={mac}",
           "--network", b["name"], ref, "sleep", "600")
    info = json.loads(podman("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]
    assert info[a["name"]]["IPAddress"] == ip and info[a["name"]]["MacAddress"] == mac, info
    ip_b = info[b["name"]]["IPAddress"]
    assert ipaddress.ip_address(ip_b) in ipaddress.ip_network("10.215.0.0/24"), info

    inside = podman("exec", name, "sh", "-c", "ip addr; ip route").stdout
    assert re.search(rf"link/ether {mac}.*\n.*inet {re.escape(ip)}/24", inside), inside
    assert f"inet {ip_b}/24" in inside, inside
    assert "10.216.0.0/16 via 10.215.0.1" in inside, inside
    assert len(env.host_veths()) == 2
    assert list(env.leases(a["name"])) == [ip] and list(env.leases(b["name"])) == [ip_b]
    podman("exec", name, "ping", "-c", "1", "-W", "3", GATEWAY)
    podman("exec", name, "ping", "-c", "1", "-W", "3", "10.215.0.1")

    podman("rm", "--force", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(a["name"]) == {} and env.leases(b["name"]) == {}


def test_podman_network_reload(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str]) -> None:
    """`podman network reload` tears the attachment down and sets it up again in the live netns."""
    archive, ref = busybox_image
    conf = _conf(env, support.unique("pmn-"))
    env.write_conf(conf)
    podman("load", "-i", archive)
    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", conf["name"], ref, "sleep", "600")
    podman("network", "reload", name)
    info = json.loads(podman("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][conf["name"]]
    assert len(env.host_veths()) == 1, env.host_veths()
    assert list(env.leases(conf["name"])) == [info["IPAddress"]], env.leases(conf["name"])
    inside = podman("exec", name, "sh", "-c", f"ip addr show eth0; ping -c 1 -W 3 {GATEWAY} && echo PING-OK").stdout
    assert f"inet {info['IPAddress']}/24" in inside and "PING-OK" in inside, inside
    podman("rm", "--force", "--time", "0", name)
    assert env.host_veths() == []
    assert env.leases(conf["name"]) == {}


@pytest.mark.parametrize("example", cnienv.example_params())
def test_podman_conf_example(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str],
                             example: Path | None) -> None:
    """Every example network, as shipped, works under podman, outbound access included."""
    conf, expect = example_for_container(env, example)
    archive, ref = busybox_image
    podman("load", "-i", archive)
    fw_before = cnienv.firewall_snapshot(env.host_ns)

    name = support.unique("c-")
    podman("run", "-d", "--name", name, "--network", conf["name"], ref, "sleep", "600")
    addrs = assert_container_view(podman("exec", name, "sh", "-c", inside_script(expect)).stdout, expect)
    assert len(env.host_veths()) == 1, env.host_veths()
    assert sorted(env.leases(conf["name"])) == sorted(addrs), (env.leases(conf["name"]), addrs)
    if expect["gateway"]:
        for a in addrs:
            ping(env.host_ns, a)

    podman("rm", "--force", "--time", "0", name)
    assert_container_gone(env, conf, fw_before)


def test_podman_bridge_mode_pod_to_pod(env: CniEnv, podman: Podman, busybox_image: tuple[Path, str]) -> None:
    """Two containers on an nsveth bridge-mode network reach each other over the bridge."""
    archive, ref = busybox_image
    conf = _conf(env, support.unique("pmbr-"))
    conf["plugins"][0].update(mode="bridge", bridge="nsve2ebr0", isGateway=True)
    env.write_conf(conf)
    net = conf["name"]
    podman("load", "-i", archive)
    names = [support.unique("c-"), support.unique("c-")]
    for n in names:
        podman("run", "-d", "--name", n, "--network", net, ref, "sleep", "600")
    ips = [json.loads(podman("inspect", n).stdout)[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
           for n in names]
    assert len(set(ips)) == 2, ips
    ports = [v for v in env.host_veths() if v.get("master") == "nsve2ebr0"]
    assert len(ports) == 2, env.host_veths()
    podman("exec", names[0], "ping", "-c", "1", "-W", "3", ips[1])
    podman("exec", names[1], "ping", "-c", "1", "-W", "3", ips[0])
    podman("exec", names[0], "ping", "-c", "1", "-W", "3", GATEWAY)

    podman("rm", "--force", "--time", "0", *names)
    assert env.host_veths() == []
    assert env.leases(net) == {}
    assert env.records(net) == []
