"""`nsveth inspect` and `nsveth cleanup` against real attachments, in-process (cli.main) and as the built executable.

Everything happens in a throwaway host netns with the network's private
runtime dir: the subcommands act on the netns they run in and take
--runtime-dir.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess

import pytest
from support import EXECUTABLE, Netns, Network, host_veths, unique

POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=ctr-a"
CID_A = "0123456789abcdef0123456789abcdef"


@pytest.fixture(params=["inproc", "exe"])
def cli(request, host_ns):
    """Runs `nsveth ARGS...` in the host netns; returns (status, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        if request.param == "exe":
            if not os.access(EXECUTABLE, os.X_OK):
                raise AssertionError(f"{EXECUTABLE} is missing: run ./build.sh first")
            proc = subprocess.run(
                ["ip", "netns", "exec", host_ns.name, EXECUTABLE, *args], capture_output=True, text=True, timeout=120
            )
            return proc.returncode, proc.stdout, proc.stderr
        from nsveth import cli as cli_mod
        from nsveth import netns as nsmod

        out, err = io.StringIO(), io.StringIO()
        fd = nsmod.open_path(host_ns.path)
        try:
            with nsmod.entered(fd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = cli_mod.main(list(args), os.environ)
        finally:
            os.close(fd)
        return status, out.getvalue(), err.getvalue()

    run.mode = request.param
    return run


def add(inproc, conf, cid, pod, **extra):
    reply = inproc.run("ADD", conf, container_id=cid, netns=pod.path, **extra)
    assert reply.status == 0, reply.stdout
    return reply.json


def nft_table(host: Netns) -> bool:
    return host.run("nft", "list", "table", "inet", "nsveth", check=False).returncode == 0


def nsv_chains(host: Netns) -> list[str]:
    out = []
    for tool in ("iptables", "ip6tables"):
        text = host.run(tool, "-w", "5", "-t", "nat", "-S").stdout
        out += [line.split()[1] for line in text.splitlines() if line.startswith("-N NSV-")]
    return out


def links_of_kind(host: Netns, kind: str) -> dict[str, dict]:
    return {n: link for n, link in host.links().items() if link.get("linkinfo", {}).get("info_kind") == kind}


# ------------------------------------------------------------------ inspect
def test_inspect_lists_filters_and_forgets_attachments(cli, inproc, net):
    conf = net.conf(advertise={"count": 2, "intervalMs": 2000})
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        add(inproc, conf, CID_A, a, CNI_ARGS=POD_ARGS)
        add(inproc, net.conf(advertise={"count": 1}), "ctr-b", b)
        from nsveth.attachment import host_ifname

        veth_a, veth_b = host_ifname(CID_A, "eth0"), host_ifname("ctr-b", "eth0")
        assert sorted([veth_a, veth_b]) == host_veths(inproc.host)

        status, out, err = cli("inspect", "--runtime-dir", net.runtime_dir, "--json")
        assert status == 0, err
        first, second = json.loads(out)
        assert first["containerID"] == CID_A and second["containerID"] == "ctr-b"
        assert first["network"] == net.name and first["ifname"] == "eth0"
        assert first["pod"] == "shop/web-1" and first["podNamespace"] == "shop" and first["podName"] == "web-1"
        assert second["pod"] is None
        assert first["hostIfname"] == veth_a and second["hostIfname"] == veth_b
        assert first["addresses"] == ["10.77.0.2/24"] and second["addresses"] == ["10.77.0.3/24"]
        assert first["netns"] == a.path and first["phase"] == "added" and first["mode"] == "ptp"
        assert 0 <= first["ageSeconds"] < 60 and first["writtenAt"].endswith("+00:00")
        # a's sender waits 2 s for its second round; b sent its only round itself.
        assert first["sender"]["running"] is True and second["sender"] is None

        status, out, err = cli("inspect", "--runtime-dir", net.runtime_dir)
        assert status == 0, err
        heading, row_a, row_b = out.splitlines()
        assert heading.split() == ["NETWORK", "POD", "CONTAINER", "IFNAME", "HOST", "VETH", "ADDRESSES", "NETNS", "PHASE", "AGE", "SENDER"]
        assert row_a.split()[:8] == [net.name, "shop/web-1", CID_A[:12], "eth0", veth_a, "10.77.0.2/24", a.path, "added"]
        assert row_a.split()[-2:] == ["pid", str(first["sender"]["pid"])]
        assert row_b.split()[1] == "-" and row_b.split()[-1] == "-"

        for filters, want in (
            (["--pod", "web-1"], [CID_A]),
            (["--pod", "shop/web-1"], [CID_A]),
            (["--container", "ctr-"], ["ctr-b"]),
            (["--container", CID_A[:6], "--network", net.name], [CID_A]),
        ):
            status, out, err = cli("inspect", "--runtime-dir", net.runtime_dir, "--json", *filters)
            assert status == 0 and [e["containerID"] for e in json.loads(out)] == want, (filters, out, err)
        status, out, err = cli("inspect", "--runtime-dir", net.runtime_dir, "--pod", "other/web-1")
        assert status == 1 and out == "" and "no attachment matches" in err

        assert inproc.run("DEL", conf, container_id=CID_A, netns=a.path).status == 0
        status, out, _ = cli("inspect", "--runtime-dir", net.runtime_dir, "--json")
        assert [e["containerID"] for e in json.loads(out)] == ["ctr-b"]
        assert inproc.run("DEL", conf, container_id="ctr-b", netns=b.path).status == 0
        status, out, _ = cli("inspect", "--runtime-dir", net.runtime_dir)
        assert status == 0 and len(out.splitlines()) == 1  # the heading alone
    finally:
        a.delete()
        b.delete()


def test_inspect_shows_an_interrupted_add_and_an_unreadable_record(cli, inproc, net, pod_ns):
    """phase "adding" (an ADD killed mid-way) and a record nsveth cannot parse are listed, not hidden."""
    add(inproc, net.conf(), "ctr-ok", pod_ns)
    directory = os.path.join(net.runtime_dir, net.name)
    record = json.load(open(os.path.join(directory, "ctr-ok:eth0.json")))
    with open(os.path.join(directory, "ctr-killed:eth0.json"), "w") as f:
        json.dump({**record, "phase": "adding", "containerID": "ctr-killed", "addresses": []}, f)
    with open(os.path.join(directory, "ctr-garbled:eth1.json"), "w") as f:
        f.write("{not json")
    status, out, err = cli("inspect", "--runtime-dir", net.runtime_dir, "--json")
    assert status == 0, err
    phases = {e["containerID"]: e["phase"] for e in json.loads(out)}
    assert phases == {"ctr-garbled": "unreadable", "ctr-killed": "adding", "ctr-ok": "added"}
    from nsveth.attachment import host_ifname

    garbled = next(e for e in json.loads(out) if e["containerID"] == "ctr-garbled")
    assert garbled["hostIfname"] == host_ifname("ctr-garbled", "eth1") and garbled["netns"] is None


def test_help_and_usage_errors(cli, tmp_path):
    status, out, _ = cli("inspect", "--help")
    assert status == 0 and out.startswith("usage: nsveth inspect") and "--runtime-dir" in out and "--pod" in out
    status, out, _ = cli("cleanup", "--help")
    assert status == 0 and out.startswith("usage: nsveth cleanup") and "--dry-run" in out and "--force" in out
    status, _, err = cli("inspect", "--bogus")
    assert status == 2 and "unrecognized arguments: --bogus" in err
    status, out, _ = cli("--help")
    assert status == 0 and "inspect" in out and "cleanup" in out
    status, _, err = cli("nosuch")
    assert status == 2 and "unknown subcommand 'nosuch'" in err
    # No runtime dir yet: nothing held, not an error.
    status, out, _ = cli("inspect", "--runtime-dir", str(tmp_path / "none"))
    assert status == 0 and out.split()[0] == "NETWORK" and len(out.splitlines()) == 1


# ------------------------------------------------------------------ cleanup
def two_networks(tmp_path) -> tuple[Network, str, dict, dict]:
    """One runtime dir with two masquerading networks: a bridge (nftables) and a ptp (iptables)."""
    net = Network(str(tmp_path), "10.78.0.0/24")
    bridge = unique("brb")
    bconf = net.conf(mode="bridge", bridge=bridge, isGateway=True, ipMasq=True)
    pconf = {**net.conf(ipMasq=True, ipMasqBackend="iptables"), "name": unique("nt-")}
    pconf["ipam"] = {**pconf["ipam"], "ranges": [[{"subnet": "10.79.0.0/24"}]]}
    return net, bridge, bconf, pconf


def test_cleanup_refuses_while_attachments_exist_then_removes_what_nsveth_left(cli, inproc, tmp_path):
    bridge_net, bridge, bconf, pconf = two_networks(tmp_path)
    foreign = unique("brf")
    inproc.host.run("ip", "link", "add", foreign, "type", "bridge")  # not nsveth's: never touched
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        add(inproc, bconf, "ctr-bridge", a)
        add(inproc, pconf, "ctr-ptp", b, CNI_ARGS=POD_ARGS)
        assert links_of_kind(inproc.host, "bridge")[bridge].get("ifalias") == "nsveth"
        assert nft_table(inproc.host) and len(nsv_chains(inproc.host)) == 1

        status, out, err = cli("cleanup", "--runtime-dir", bridge_net.runtime_dir)
        assert status == 1 and "2 attachment(s) still use nsveth" in err and "shop/web-1" in err and "--force" in err
        assert len(host_veths(inproc.host)) == 2 and nft_table(inproc.host) and os.path.isdir(bridge_net.runtime_dir)

        assert inproc.run("DEL", bconf, container_id="ctr-bridge", netns=a.path).status == 0
        assert inproc.run("DEL", pconf, container_id="ctr-ptp", netns=b.path).status == 0
        # DEL leaves the bridge, the (empty) table and the runtime dir: what cleanup is for.
        assert bridge in links_of_kind(inproc.host, "bridge") and nft_table(inproc.host)

        status, out, err = cli("cleanup", "--runtime-dir", bridge_net.runtime_dir, "--dry-run")
        assert status == 0, err
        assert f"would remove: bridge {bridge} (created by nsveth, no ports)" in out
        assert "would remove: nftables table inet nsveth" in out
        assert f"would remove: runtime dir {bridge_net.runtime_dir}" in out
        assert "ip_forward" in out and foreign not in out
        assert bridge in links_of_kind(inproc.host, "bridge") and nft_table(inproc.host)
        assert os.path.isdir(bridge_net.runtime_dir)

        status, out, err = cli("cleanup", "--runtime-dir", bridge_net.runtime_dir)
        assert status == 0, err
        assert f"removed: bridge {bridge}" in out and "left: net.ipv4.ip_forward" in out
        assert set(links_of_kind(inproc.host, "bridge")) == {foreign}
        assert not nft_table(inproc.host) and nsv_chains(inproc.host) == []
        assert not os.path.exists(bridge_net.runtime_dir)
        status, out, err = cli("cleanup", "--runtime-dir", bridge_net.runtime_dir)
        assert status == 0 and "nothing of nsveth's to remove" in out, (out, err)
    finally:
        a.delete()
        b.delete()


def test_cleanup_force_tears_attachments_down_as_del_would(cli, inproc, tmp_path):
    net, bridge, bconf, pconf = two_networks(tmp_path)
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        add(inproc, bconf, "ctr-bridge", a)
        add(inproc, pconf, "ctr-ptp", b)
        leases = os.path.join(net.ipam_dir, pconf["name"])
        assert "10.79.0.2" in os.listdir(leases)

        status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir, "--force", "--dry-run")
        assert status == 0, err
        assert f"would tear down: {net.name} ctr-bridge/eth0" in out and f"would tear down: {pconf['name']} ctr-ptp/eth0" in out
        assert len(host_veths(inproc.host)) == 2

        status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir, "--force", "--cni-path", "/usr/lib/cni")
        assert status == 0, (out, err)
        assert f"tore down: {pconf['name']} ctr-ptp/eth0" in out and f"removed: bridge {bridge}" in out
        assert host_veths(inproc.host) == [] and "eth0" not in a.links() and "eth0" not in b.links()
        assert net.leases() == [] and "10.79.0.2" not in os.listdir(leases)
        assert not nft_table(inproc.host) and nsv_chains(inproc.host) == []
        assert bridge not in inproc.host.links() and not os.path.exists(net.runtime_dir)
    finally:
        a.delete()
        b.delete()


def test_cleanup_refuses_what_no_record_here_explains_and_keeps_foreign_files(cli, inproc, net, pod_ns, tmp_path):
    """The table, chains and bridges are the host's: a pod of another runtimeDir (or a mistyped
    --runtime-dir) still uses them, so cleanup removes nothing, even with --force."""
    other = Network(str(tmp_path / "other"), "10.79.0.0/24")
    oconf = other.conf(ipMasq=True)
    add(inproc, oconf, "ctr-other", pod_ns)
    try:
        assert nft_table(inproc.host)
        for extra in ((), ("--force",)):
            status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir, *extra)
            assert status == 1 and "not by an attachment recorded" in err and "nftables chain nsveth" not in out, err
            assert f"nftables chain {other.name}-" in err, err
            assert nft_table(inproc.host) and len(host_veths(inproc.host)) == 1
    finally:
        assert inproc.run("DEL", oconf, container_id="ctr-other", netns=pod_ns.path).status == 0

    bridge = unique("brb")
    conf = net.conf(mode="bridge", bridge=bridge)
    add(inproc, conf, "ctr-x", pod_ns)
    assert inproc.run("DEL", conf, container_id="ctr-x", netns=pod_ns.path).status == 0
    port = unique("vq")
    inproc.host.run("ip", "link", "add", port, "type", "veth", "peer", "name", unique("vq"))
    inproc.host.run("ip", "link", "set", port, "master", bridge)
    status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir)
    assert status == 1 and f"bridge {bridge} has ports {port}" in err, (out, err)
    assert bridge in inproc.host.links() and os.path.isdir(net.runtime_dir)

    inproc.host.run("ip", "link", "del", port)
    stray = os.path.join(net.runtime_dir, "notes.txt")
    with open(stray, "w") as f:
        f.write("mine")
    status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir)
    assert status == 0, err
    assert f"removed: bridge {bridge}" in out
    assert f"kept: {stray} (not made by nsveth); the runtime dir stays" in out
    assert bridge not in inproc.host.links() and os.path.exists(stray)


def test_cleanup_keeps_a_live_warm_servers_socket_and_removes_a_dead_ones(cli, net, tmp_path):
    """The default socket lives in the default runtime dir: while a server listens there, the dir
    stays and cleanup says why; a socket whose server died is nsveth's leftover and goes."""
    os.makedirs(net.runtime_dir, mode=0o700, exist_ok=True)
    path = os.path.join(net.runtime_dir, "nsveth.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    try:
        status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir)
        assert status == 0, err
        assert f"kept: {path} (the warm server's socket: nsveth serve is listening" in out, out
        assert os.path.exists(path)
    finally:
        server.close()  # the socket file stays: a server that died
    status, out, err = cli("cleanup", "--runtime-dir", net.runtime_dir)
    assert status == 0, err
    assert "kept:" not in out and f"removed: runtime dir {net.runtime_dir}" in out, out
    assert not os.path.exists(net.runtime_dir)
