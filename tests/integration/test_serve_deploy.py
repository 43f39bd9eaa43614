"""Deploying the warm server: systemd socket activation, a server in another mount namespace, the DaemonSet container."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import support
import yaml
from support import REPO, Plugin, with_prev

UNITS = os.path.join(REPO, "deploy", "systemd")


def test_systemd_units_verify(tmp_path):
    """`systemd-analyze verify` accepts the units as shipped (ExecStart pointed at this build:
    it checks that the binary exists) and prints nothing (it warns, without failing, on a bad value)."""
    for name in ("nsveth.socket", "nsveth.service"):
        with open(os.path.join(UNITS, name)) as f:
            text = f.read()
        assert name != "nsveth.service" or "ExecStart=/opt/cni/bin/nsveth serve" in text
        (tmp_path / name).write_text(text.replace("/opt/cni/bin/nsveth", support.EXECUTABLE))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "nsveth.socket"), str(tmp_path / "nsveth.service")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr
    socket_unit = (tmp_path / "nsveth.socket").read_text()
    assert "ListenStream=/run/nsveth/nsveth.sock" in socket_unit and "SocketMode=0600" in socket_unit
    assert "KillMode=process" in (tmp_path / "nsveth.service").read_text()  # announcement senders outlive the server


def test_socket_activation_with_systemd_socket_activate(host_ns, pod_ns, net):
    """The real LISTEN_FDS protocol: nothing runs until the first request, which the activated server serves."""
    srv = support.Server()
    try:
        srv.start(prefix=["systemd-socket-activate", "-l", srv.socket], wait=False)
        deadline = time.monotonic() + 20
        while not os.path.exists(srv.socket):
            assert time.monotonic() < deadline and srv.proc.poll() is None, srv.log()
            time.sleep(0.05)
        assert "serving" not in srv.log()  # not started yet
        plugin = Plugin(host_ns, "served", srv)
        add = plugin.run("ADD", net.conf(), container_id="ctr-activated", netns=pod_ns.path)
        assert add.status == 0, (add.stdout, srv.log())
        assert f"serving {srv.socket}" in srv.log()  # the server took systemd's socket, it did not bind its own
        dele = plugin.run("DEL", with_prev(net.conf(), add.json), container_id="ctr-activated", netns=pod_ns.path)
        assert dele.status == 0 and net.state_files() == [] and net.leases() == []
    finally:
        srv.remove()


def test_server_in_another_mount_namespace_serves_the_hosts_client(host_ns, pod_ns, net):
    """As in the DaemonSet: the server's mount namespace hides the network's runtime and IPAM dirs
    (a tmpfs over them); the request runs in the client's and writes where the client sees it."""
    srv = support.Server()
    hide = 'mount -t tmpfs nsveth-elsewhere "$0" && exec "$@"'
    try:
        srv.start(prefix=["unshare", "-m", "--propagation", "private", "sh", "-c", hide, net.tmp])
        ns_of = lambda pid: os.readlink(f"/proc/{pid}/ns/mnt")  # noqa: E731
        assert ns_of(srv.proc.pid) != ns_of(os.getpid())
        seen_by_server = subprocess.run(["nsenter", "-m", "-t", str(srv.proc.pid), "ls", "-A", net.tmp], capture_output=True, text=True)
        assert seen_by_server.returncode == 0 and seen_by_server.stdout == ""
        plugin = Plugin(host_ns, "served", srv)
        add = plugin.run("ADD", net.conf(), container_id="ctr-mntns", netns=pod_ns.path)
        assert add.status == 0, add.stdout
        assert net.state_files() and net.leases() == ["10.77.0.2"]  # in the client's view
        seen_by_server = subprocess.run(["nsenter", "-m", "-t", str(srv.proc.pid), "ls", "-A", net.tmp], capture_output=True, text=True)
        assert seen_by_server.stdout == ""  # nothing written into the server's own view
        dele = plugin.run("DEL", with_prev(net.conf(), add.json), container_id="ctr-mntns", netns=pod_ns.path)
        assert dele.status == 0 and net.state_files() == [] and net.leases() == []
    finally:
        srv.remove()


def test_daemonset_runs_the_warm_server():
    with open(os.path.join(REPO, "deploy", "nsveth-daemonset.yaml")) as f:
        (ds,) = [d for d in yaml.safe_load_all(f) if d and d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    (serve,) = [c for c in spec["containers"] if c["name"] == "serve"]
    assert serve["command"][:2] == ["/opt/nsveth/bundle/nsveth", "serve"]
    assert serve["securityContext"]["privileged"] is True  # setns into the host's mount and network namespaces
    assert spec["hostPID"] is True  # announcement sender pids recorded as the host sees them
    (mount,) = serve["volumeMounts"]
    assert mount["mountPath"] == "/run/nsveth"
    (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert vol["hostPath"]["path"] == "/run/nsveth"
    with open(os.path.join(REPO, "deploy", "Containerfile")) as f:
        # The bundle the command names: the portable one (glibc >= 2.31 nodes), as test_manifests.py checks too.
        assert "COPY dist/portable/nsveth/ /opt/nsveth/bundle/" in f.read()


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("systemd-analyze", "systemd-socket-activate", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: scripts/setup.sh installs it (scripts/apt-packages.txt)")
