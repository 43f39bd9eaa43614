"""The ConfigMap's chain, installed by the installer, runs pods (root only).

Installs the built bundle (dist/nsveth/) into a temp bin dir next to Debian's
host-local and portmap, renders the ConfigMap template for a dual-stack node,
and then does what the runtime does with that conflist: exec <bindir>/nsveth
(the installed symlink) with CNI_PATH=<bindir>, then portmap with the result,
then DEL in reverse. Everything runs inside throwaway "host" and "pod" netns.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import support
from deploy_support import REPO, Node

DIST = REPO / "dist" / "nsveth"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not (DIST / "nsveth").exists(), reason="run ./build.sh first"),
]


def plugin_conf(conflist: dict, index: int, tmp: Path) -> dict:
    """What a runtime passes to one plugin of the list; state dirs moved into tmp
    so nothing touches the machine's /var/lib/cni or /run/nsveth."""
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **conflist["plugins"][index]}
    if conf["type"] == "nsveth":
        conf["runtimeDir"] = str(tmp / "run")
        conf["ipam"] = {**conf["ipam"], "dataDir": str(tmp / "ipam")}
    return conf


def call(host: support.Netns, exe: Path, command: str, conf: dict, bin_dir: Path, pod: support.Netns,
         **extra: str) -> dict | None:
    env = support.cni_env(command, "e2e-" + pod.name, pod.path, CNI_PATH=str(bin_dir), PATH="/usr/sbin:/usr/bin:/sbin:/bin", **extra)
    proc = subprocess.run(["ip", "netns", "exec", host.name, str(exe)], input=json.dumps(conf).encode(),
                          env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, (command, conf["type"], proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_configmap_chain_adds_and_deletes_a_pod(node: Node, tmp_path: Path) -> None:
    for plugin in ("host-local", "portmap"):
        (node.bin_dir / plugin).unlink()
        (node.bin_dir / plugin).symlink_to(Path(support.CNI_PATH) / plugin)
    node.bundles["dist"] = DIST
    octet = random.randint(1, 254)
    v4, v6 = f"10.79.{octet}.0/24", f"fd79:0:{octet:x}::/64"
    assert node.run("--pod-cidr", f"{v4},{v6}", bundle="dist") == 0
    conflist = json.loads(node.conflist.read_text())
    nsveth, portmap = plugin_conf(conflist, 0, tmp_path), plugin_conf(conflist, 1, tmp_path)
    mappings = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}

    with support.netns("nsvdh-") as host, support.netns("nsvdp-") as pod:
        result = call(host, node.bin_dir / "nsveth", "ADD", nsveth, node.bin_dir, pod)
        try:
            ips = sorted(ip["address"] for ip in result["ips"])
            assert any(a.startswith(f"10.79.{octet}.") for a in ips), ips
            assert any(a.startswith(f"fd79:0:{octet:x}::") for a in ips), ips
            assert pod.addresses("eth0")
            assert any(r.get("dst") == "default" for r in pod.routes("-4"))
            pm = call(host, node.bin_dir / "portmap", "ADD",
                      {**portmap, "prevResult": result, "runtimeConfig": mappings}, node.bin_dir, pod)
            assert pm["ips"] == result["ips"]  # a chained plugin passes the result on
            call(host, node.bin_dir / "portmap", "DEL",
                 {**portmap, "prevResult": result, "runtimeConfig": mappings}, node.bin_dir, pod)
        finally:
            call(host, node.bin_dir / "nsveth", "DEL", {**nsveth, "prevResult": result}, node.bin_dir, pod)
        assert "eth0" not in pod.links()
        assert support.host_veths(host) == []
