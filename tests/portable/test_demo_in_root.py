"""The demo (ADD, CHECK, DEL into a throwaway netns, as demo.sh) with the
portable bundle running inside the Debian 11 root: its dynamic loader and
glibc 2.31, not the host's, and Debian 11's host-local for IPAM (it speaks CNI
up to 0.4.0, so the demo's config says 0.4.0).

The namespaces are made on the host; the plugin runs as
`ip netns exec HOST chroot ROOT BUNDLE` with a clean environment, so no
`ip netns exec` runs inside the chroot. The root gets /proc and /dev (the
plugin checks /proc/self/ns/net, the announcer runs on /dev/null) and the pod
netns bound onto a file, all unmounted again, pass or fail.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import support

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts, netns)")

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@contextlib.contextmanager
def staged(root: str, bundle: str, pod: support.Netns | None = None) -> Iterator[str]:
    """A private dir in the root (path as seen inside it) holding a copy of the bundle,
    with /proc, /dev and the pod netns (as <dir>/podns) mounted for the duration."""
    inside = f"/tmp/{support.unique('nsvt-')}"
    outside = root + inside
    mounted: list[str] = []

    def mount(*args: str) -> None:
        support.sh("mount", *args)
        mounted.append(args[-1])

    try:
        os.makedirs(outside)
        shutil.copytree(bundle, outside + "/nsveth", symlinks=True)
        mount("-t", "proc", "proc", f"{root}/proc")
        mount("--bind", "/dev", f"{root}/dev")
        if pod is not None:
            open(outside + "/podns", "w").close()
            mount("--bind", pod.path, outside + "/podns")
        yield inside
    finally:
        for m in reversed(mounted):
            support.sh("umount", m, check=False)
        if not any(m in open("/proc/mounts").read() for m in mounted):
            shutil.rmtree(outside, ignore_errors=True)


def run_in_root(root: str, argv: list[str], env: dict[str, str], stdin: bytes = b"", host: support.Netns | None = None) -> support.Reply:
    cmd = ["chroot", root, *argv]
    if host is not None:
        cmd = ["ip", "netns", "exec", host.name, *cmd]
    proc = subprocess.run(cmd, input=stdin, env={"PATH": PATH, **env}, capture_output=True, timeout=120)
    return support.Reply(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


def test_the_root_has_glibc_2_31(root: str) -> None:
    reply = run_in_root(root, ["/lib/x86_64-linux-gnu/libc.so.6"], {})
    assert "release version 2.31" in reply.stdout.decode(), reply.stdout


def test_the_local_bundle_does_not_start_in_the_root(root: str) -> None:
    """The root really gives the bundle its old glibc: ./build.sh's bundle (Debian 12) cannot start there."""
    local = os.path.join(support.REPO, "dist", "nsveth")
    if not os.path.isdir(local):
        pytest.skip("dist/nsveth is not built (./build.sh)")
    with staged(root, local) as d:
        reply = run_in_root(root, [d + "/nsveth/nsveth"], {"CNI_COMMAND": "VERSION"})
    assert reply.status != 0
    assert "GLIBC_2.3" in reply.stderr and "not found" in reply.stderr, reply.stderr


def test_demo_add_check_del_inside_the_root(root: str, bundle: str) -> None:
    with support.netns("nsvh-") as host, support.netns("nsvp-") as pod, staged(root, bundle, pod) as d:
        exe = d + "/nsveth/nsveth"
        version = run_in_root(root, [exe], {"CNI_COMMAND": "VERSION"}, host=host)
        assert version.status == 0, version.stderr
        assert "0.4.0" in version.json["supportedVersions"]

        # The nsveth entry of the ptp example, as demo.sh passes it, at 0.4.0: Debian 11's host-local
        # speaks up to 0.4.0.
        doc = support.load_example("ptp.conflist")
        conf = {**doc["plugins"][0], "cniVersion": "0.4.0", "name": doc["name"]}
        conf.pop("ipMasq")  # the minimal root has neither nft nor iptables
        conf["ipam"]["dataDir"] = d + "/ipam"
        conf["runtimeDir"] = d + "/run"
        env = {"CNI_CONTAINERID": "demo-portable", "CNI_NETNS": d + "/podns", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni"}

        def cni(command: str, config: dict) -> support.Reply:
            return run_in_root(root, [exe], {**env, "CNI_COMMAND": command}, json.dumps(config).encode(), host)

        add = cni("ADD", conf)
        assert add.status == 0, (add.stdout, add.stderr)
        result = add.json
        address = result["ips"][0]["address"]
        subnet = ipaddress.ip_network(conf["ipam"]["ranges"][0][0]["subnet"])
        assert ipaddress.ip_interface(address).network == subnet, result
        assert pod.addresses("eth0") == [address]
        assert len(support.host_veths(host)) == 1
        gateway = result["ips"][0]["gateway"]
        assert pod.run("ping", "-c", "2", "-W", "2", gateway, check=False).returncode == 0

        check = cni("CHECK", support.with_prev(conf, result))
        assert check.status == 0, (check.stdout, check.stderr)

        delete = cni("DEL", support.with_prev(conf, result))
        assert delete.status == 0, (delete.stdout, delete.stderr)
        assert "eth0" not in pod.links()
        assert support.host_veths(host) == []
        leases = [f for f in os.listdir(root + d + "/ipam/" + conf["name"]) if f[0].isdigit()]
        assert leases == []
