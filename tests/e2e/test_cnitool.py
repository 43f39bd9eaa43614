"""nsveth driven by cnitool (Debian's libcni): examples, chains, GC and STATUS."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cnienv
import pytest
import support
from attachment_checks import assert_attached, assert_detached, assert_no_new_rules, ping
from cnienv import CniEnv, Sandbox
from nsveth import versions

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["inproc", "served"])
def env(cnitool: Path, request: pytest.FixtureRequest):
    """Each test with the plugin in-process, and handing its requests to the session's warm server."""
    e = cnienv.CniEnv.create()
    server = request.getfixturevalue("nsveth_server") if request.param == "served" else None
    served_before = server.served_count() if server else 0
    try:
        if server:
            e.serve_socket = server.socket
        yield e
        if server and cnienv.PLUGIN == "nsveth":
            assert server.served_count() > served_before, "no request went through the server"
    finally:
        e.close()


@pytest.mark.parametrize("example", cnienv.example_params())
def test_conf_example_add_check_del(env: CniEnv, make_pod: Callable[[], str], example: Path | None) -> None:
    """Every example as shipped (no field changed): ADD, CHECK, DEL twice, and outbound access when
    it masquerades. cnitool runs in a Sandbox where the example's default paths (/var/lib/cni,
    /run/nsveth, /etc/cni/nsveth with the shipped allowlist) are the env's."""
    conf = cnienv.example_conflist(env, example)
    net = conf["name"]
    pod = make_pod()  # before the Sandbox: later netns mounts do not propagate into it
    outside = cnienv.prepare_host(env, conf)
    fw_before = cnienv.firewall_snapshot(env.host_ns)
    sandbox = Sandbox(env.host_ns, env.binds(), env.root / "sandbox")
    try:
        result = env.add(net, pod, sandbox=sandbox)
        facts = assert_attached(env, conf, result, pod)
        if cnienv.main_plugin(conf).get("ipMasq"):
            fw = cnienv.firewall_snapshot(env.host_ns)
            assert cnienv.firewall_lines_mentioning(fw, *facts["ips"]), ("no masquerade rule for the pod", fw)
        if outside:
            ping(pod.rsplit("/", 1)[-1], outside)  # answered only when masqueraded

        env.cnitool("check", net, pod, sandbox=sandbox)
        env.cnitool("del", net, pod, sandbox=sandbox)
        assert_detached(env, conf, pod, facts)
        assert_no_new_rules(fw_before, cnienv.firewall_snapshot(env.host_ns))
        # DEL is idempotent: a second one succeeds and changes nothing.
        env.cnitool("del", net, pod, sandbox=sandbox)
        assert_detached(env, conf, pod, facts)
    finally:
        sandbox.close()


def _base_conf(env: CniEnv, subnet: str, name: str, version: str = "1.0.0") -> dict[str, Any]:
    return {
        "cniVersion": version, "name": name, "type": "nsveth", "mtu": 1400,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                 "dataDir": str(env.ipam_dir)},
    }


def test_single_plugin_lifecycle(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """Two pods on one network: distinct addresses, independent DEL."""
    conf = _base_conf(env, "10.201.7.0/24", support.unique("single-"))
    env.write_conf(conf)
    pod_a, pod_b = make_pod(), make_pod()
    res_a = env.add(conf["name"], pod_a)
    res_b = env.add(conf["name"], pod_b)
    facts_a = assert_attached(env, conf, res_a, pod_a)
    facts_b = assert_attached(env, conf, res_b, pod_b)
    assert facts_a["ips"] != facts_b["ips"]
    assert len(env.host_veths()) == 2
    env.cnitool("check", conf["name"], pod_a)
    env.cnitool("check", conf["name"], pod_b)

    env.cnitool("del", conf["name"], pod_a)
    assert_detached(env, conf, pod_a, facts_a)
    assert_attached(env, conf, res_b, pod_b)  # B is untouched by A's DEL
    env.cnitool("del", conf["name"], pod_b)
    assert_detached(env, conf, pod_b, facts_b)
    assert env.host_veths() == []


def test_check_detects_removed_pod_interface(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.201.8.0/24", support.unique("chk-"))
    env.write_conf(conf)
    pod = make_pod()
    res = env.add(conf["name"], pod)
    facts = assert_attached(env, conf, res, pod)
    support.run(["ip", "-n", pod.rsplit("/", 1)[-1], "link", "del", "eth0"])
    proc = env.cnitool("check", conf["name"], pod, check=False)
    assert proc.returncode != 0, proc
    assert "eth0" in proc.stderr, proc.stderr
    # DEL still cleans up what is left (lease, cache).
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, pod, facts)


TUNING_MAC = "02:42:ac:1e:00:99"
TUNING_SYSCTL = ("net.ipv4.conf.eth0.arp_ignore", "1")
HOST_PORT = 18080


def _chain(env: CniEnv, name: str, *, portmap: bool) -> dict[str, Any]:
    base = _base_conf(env, "10.202.3.0/24", name)
    first = {k: v for k, v in base.items() if k not in ("cniVersion", "name")}
    plugins: list[dict[str, Any]] = [
        first,
        {"type": "tuning", "mac": TUNING_MAC, "sysctl": {TUNING_SYSCTL[0]: TUNING_SYSCTL[1]}},
    ]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    plugins.append({"type": "bandwidth", "ingressRate": 8_000_000, "ingressBurst": 800_000,
                    "egressRate": 8_000_000, "egressBurst": 800_000})
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}


def test_chain_tuning_portmap_bandwidth(env: CniEnv, make_pod: Callable[[], str]) -> None:
    name = support.unique("chain-")
    conf = _chain(env, name, portmap=True)
    env.write_conf(conf)
    # Debian's portmap 1.1.1 fails CHECK (containernetworking/plugins#819), so CHECK runs on a
    # list without it; ADD and DEL use the full chain.
    check_dir = env.root / "net.d-check"
    env.write_conf(_chain(env, name, portmap=False), check_dir)
    cap = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]}
    pod = make_pod()
    ns = pod.rsplit("/", 1)[-1]
    fw_before = cnienv.firewall_snapshot(env.host_ns)
    links_before = {link["ifname"] for link in cnienv.links(env.host_ns)}

    result = env.add(name, pod, cap_args=cap)
    facts = assert_attached(env, conf, result, pod)
    cid = facts["cid"]
    [pod_ip] = facts["ips"]

    # prevResult flowed through the chain: tuning's MAC is in the final result and on the link.
    _, iface = cnienv.pod_iface(result, "eth0", pod)
    assert iface["mac"].lower() == TUNING_MAC
    assert support.ip_json(ns, "-d", "link", "show", "dev", "eth0")[0]["address"] == TUNING_MAC
    assert cnienv.read_sysctl(ns, TUNING_SYSCTL[0], "eth0") == TUNING_SYSCTL[1]
    # portmap saw the capability and the pod IP from prevResult.
    fw = cnienv.firewall_snapshot(env.host_ns)
    dnat = [line for line in fw["iptables-save"] if "DNAT" in line and f"{pod_ip}:80" in line]
    assert any(f"--dport {HOST_PORT}" in line for line in dnat), fw["iptables-save"]
    assert cnienv.firewall_lines_mentioning(fw, cid)
    # bandwidth found the host veth in prevResult: tbf on it (ingress) and an ifb (egress).
    [host_veth] = facts["host_veths"]
    qdiscs = support.run(["tc", "-n", env.host_ns, "qdisc", "show", "dev", host_veth]).stdout
    assert "tbf" in qdiscs, qdiscs
    new_links = {link["ifname"] for link in cnienv.links(env.host_ns)} - links_before
    assert any(n.startswith("bwp") for n in new_links), new_links

    env.cnitool("check", name, pod, conf_dir=check_dir)

    env.cnitool("del", name, pod, cap_args=cap)
    assert_detached(env, conf, pod, facts)
    assert {link["ifname"] for link in cnienv.links(env.host_ns)} == links_before
    fw_after = cnienv.firewall_snapshot(env.host_ns)
    assert not cnienv.firewall_lines_mentioning(fw_after, cid, pod_ip, host_veth)
    assert_no_new_rules(fw_before, fw_after)


def _gc_setup(env: CniEnv, make_pod: Callable[[], str]) -> tuple[dict[str, Any], Path, list[str], list[Any]]:
    name = support.unique("gc-")
    conf = _base_conf(env, "10.203.5.0/24", name)
    env.write_conf(conf)
    # libcni 1.1.2 parses results up to 1.0.0, so attachments are added with the 1.0.0 config and
    # GC/STATUS use the same network at 1.1.0.
    dir11 = env.root / "net.d-1.1"
    env.write_conf(_base_conf(env, "10.203.5.0/24", name, "1.1.0"), dir11)
    pods = [make_pod(), make_pod()]
    facts = [assert_attached(env, conf, env.add(name, p), p) for p in pods]
    return conf, dir11, pods, facts


needs_cni_11 = pytest.mark.skipif(cnienv.PLUGIN != "nsveth",
                                  reason="GC/STATUS need a CNI 1.1 plugin; Debian's ptp 1.1.1 stops at 1.0.0")


@needs_cni_11
def test_status(env: CniEnv) -> None:
    name = support.unique("st-")
    dir11 = env.root / "net.d-1.1"
    env.write_conf(_base_conf(env, "10.203.9.0/24", name, "1.1.0"), dir11)
    env.cnitool("status", name, conf_dir=dir11)


@needs_cni_11
def test_gc_removes_attachment_unknown_to_runtime(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """B's cache entry is lost; GC with only A valid must remove B's veth and keep A intact."""
    conf, dir11, (pod_a, pod_b), (facts_a, facts_b) = _gc_setup(env, make_pod)
    env.cache_file(conf["name"], facts_b["cid"]).unlink()
    valid = json.dumps([{"containerID": facts_a["cid"], "ifname": "eth0"}])
    env.cnitool("gc", conf["name"], conf_dir=dir11, extra_env={"CNITOOL_VALID_ATTACHMENTS": valid})

    veths = {v["ifname"] for v in env.host_veths()}
    assert set(facts_a["host_veths"]) <= veths, veths
    assert not set(facts_b["host_veths"]) & veths, veths
    assert "eth0" not in {link["ifname"] for link in cnienv.links(pod_b.rsplit("/", 1)[-1])}
    leases = env.leases(conf["name"])
    assert facts_a["ips"][0] in leases
    assert facts_b["ips"][0] not in leases, ("GC left the stale attachment's lease", leases)
    env.cnitool("check", conf["name"], pod_a)

    env.cnitool("del", conf["name"], pod_a)
    assert_detached(env, conf, pod_a, facts_a)


@needs_cni_11
def test_gc_without_valid_attachments_cleans_everything(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """Upstream cnitool's gc: nothing is valid, cached attachments get DEL, then the plugin's GC."""
    conf, dir11, pods, facts = _gc_setup(env, make_pod)
    env.cache_file(conf["name"], facts[1]["cid"]).unlink()  # one known to libcni, one only to the plugin
    env.cnitool("gc", conf["name"], conf_dir=dir11)
    assert env.host_veths() == []
    for pod, f in zip(pods, facts, strict=True):
        assert_detached(env, conf, pod, f)


def _plugin_stdin(env: CniEnv, conf: dict[str, Any], netns: str, ifname: str = "eth0") -> bytes:
    """What libcni would send the nsveth entry of conf on DEL: name, cniVersion, prevResult from the cache."""
    adapted = env.adapt(conf)
    entry = dict(cnienv.main_plugin(adapted))
    entry.update(name=adapted["name"], cniVersion=adapted["cniVersion"])
    cached = json.loads(env.cache_file(adapted["name"], env.container_id(netns), ifname).read_text())
    entry["prevResult"] = cached["result"]
    return json.dumps(entry).encode()


def test_del_with_empty_netns_cleans_up(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """What `ctr run --cni` sends after the task exits: DEL with CNI_NETNS="" (pod netns still alive here)."""
    conf = _base_conf(env, "10.206.1.0/24", support.unique("empty-"))
    env.write_conf(conf)
    pod = make_pod()
    facts = assert_attached(env, conf, env.add(conf["name"], pod), pod)
    stdin = _plugin_stdin(env, conf, pod)
    proc = subprocess.run(
        cnienv.in_ns(env.host_ns, env.plugin_dir / cnienv.PLUGIN), input=stdin, capture_output=True,
        env=support.cni_env("DEL", facts["cid"], CNI_NETNS="", CNI_PATH=str(env.plugin_dir)), timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    env.cache_file(conf["name"], facts["cid"]).unlink()  # the runtime's part of DEL
    assert_detached(env, conf, pod, facts)


def test_del_after_pod_netns_is_gone(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.206.2.0/24", support.unique("gone-"))
    env.write_conf(conf)
    pod = make_pod()
    facts = assert_attached(env, conf, env.add(conf["name"], pod), pod)
    support.netns_delete(pod.rsplit("/", 1)[-1])
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, None, facts)
    env.cnitool("del", conf["name"], pod)


# Every version Debian 12's libcni speaks (up to 1.0.0).
@pytest.mark.parametrize("version", [v for v in versions.SUPPORTED if not versions.at_least(v, "1.1.0")])
def test_spec_versions_through_libcni(env: CniEnv, make_pod: Callable[[], str], version: str) -> None:
    conf = _base_conf(env, "10.206.3.0/24", support.unique("v-"), version)
    env.write_conf(conf)
    pod = make_pod()
    result = env.add(conf["name"], pod)
    assert result["cniVersion"] == version, result
    if not versions.at_least(version, "1.0.0"):
        assert all(ip.get("version") == "4" for ip in result["ips"]), result
    facts = assert_attached(env, conf, result, pod)
    if versions.at_least(version, "0.4.0"):  # CHECK exists from 0.4.0
        env.cnitool("check", conf["name"], pod)
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, pod, facts)


def test_two_networks_in_one_pod(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """A pod on two networks (eth0 and net1, as with Multus): independent host veths and DEL."""
    a = _base_conf(env, "10.206.4.0/24", support.unique("mna-"))
    b = _base_conf(env, "10.206.5.0/24", support.unique("mnb-"))
    b["ipam"]["routes"] = [{"dst": "10.99.0.0/16"}]
    env.write_conf(a)
    env.write_conf(b)
    pod = make_pod()
    facts_a = assert_attached(env, a, env.add(a["name"], pod), pod)
    facts_b = assert_attached(env, b, env.add(b["name"], pod, ifname="net1"), pod, "net1")
    assert facts_a["host_veths"] != facts_b["host_veths"]
    env.cnitool("check", b["name"], pod, ifname="net1")
    env.cnitool("del", a["name"], pod)
    assert_detached(env, a, pod, facts_a)
    env.cnitool("check", b["name"], pod, ifname="net1")
    env.cnitool("del", b["name"], pod, ifname="net1")
    assert_detached(env, b, pod, facts_b, "net1")
    assert env.host_veths() == []


def test_concurrent_adds_and_dels(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.206.6.0/24", support.unique("par-"))
    env.write_conf(conf)
    pods = [make_pod() for _ in range(6)]
    with ThreadPoolExecutor(len(pods)) as pool:
        results = list(pool.map(lambda p: env.add(conf["name"], p), pods))
    facts = [assert_attached(env, conf, r, p) for r, p in zip(results, pods, strict=True)]
    assert len({f["ips"][0] for f in facts}) == len(pods)
    assert len(env.host_veths()) == len(pods)
    with ThreadPoolExecutor(len(pods)) as pool:
        list(pool.map(lambda p: env.cnitool("del", conf["name"], p), pods))
    for p, f in zip(pods, facts, strict=True):
        assert_detached(env, conf, p, f)
    assert env.host_veths() == []


def test_failed_add_leaves_nothing(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """The subnet has one free address: the second ADD fails in IPAM and must leave no veth behind."""
    conf = _base_conf(env, "10.206.7.0/30", support.unique("full-"))
    env.write_conf(conf)
    first, second = make_pod(), make_pod()
    facts = assert_attached(env, conf, env.add(conf["name"], first), first)
    veths_before = {v["ifname"] for v in env.host_veths()}
    proc = env.cnitool("add", conf["name"], second, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "no IP addresses available" in proc.stderr, proc.stderr
    assert {v["ifname"] for v in env.host_veths()} == veths_before
    assert "eth0" not in {link["ifname"] for link in cnienv.links(second.rsplit("/", 1)[-1])}
    assert not env.cache_file(conf["name"], env.container_id(second)).exists()
    assert not [r for r in env.records(conf["name"]) if r.startswith(env.container_id(second))]
    # The runtime still sends DEL after a failed ADD; it must succeed and not touch the first pod.
    env.cnitool("del", conf["name"], second)
    assert_attached(env, conf, json.loads(env.cache_file(conf["name"], facts["cid"]).read_text())["result"], first)
    env.cnitool("del", conf["name"], first)
    assert_detached(env, conf, first, facts)


def test_add_twice_is_an_error_and_keeps_the_first(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.206.8.0/24", support.unique("dup-"))
    env.write_conf(conf)
    pod = make_pod()
    result = env.add(conf["name"], pod)
    facts = assert_attached(env, conf, result, pod)
    proc = env.cnitool("add", conf["name"], pod, check=False)
    assert proc.returncode != 0, proc.stdout
    assert_attached(env, conf, result, pod)
    env.cnitool("check", conf["name"], pod)
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, pod, facts)


def test_dual_stack(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.206.9.0/24", support.unique("ds-"))
    conf["ipam"]["ranges"].append([{"subnet": "fd00:206:9::/64"}])
    conf["ipam"]["routes"].append({"dst": "::/0"})
    env.write_conf(conf)
    pod = make_pod()
    result = env.add(conf["name"], pod)
    assert {ipaddress.ip_interface(ip["address"]).version for ip in result["ips"]} == {4, 6}, result
    facts = assert_attached(env, conf, result, pod)
    env.cnitool("check", conf["name"], pod)
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, pod, facts)


def test_cni_args_reach_ipam_and_unknown_keys_are_ignored(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """kubelet/CRI-style CNI_ARGS: IgnoreUnknown plus K8S_* keys, and host-local's IP= request."""
    conf = _base_conf(env, "10.207.1.0/24", support.unique("args-"))
    env.write_conf(conf)
    pod = make_pod()
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;IP=10.207.1.77"
    result = env.add(conf["name"], pod, cni_args=args)
    assert [ip["address"] for ip in result["ips"]] == ["10.207.1.77/24"], result
    facts = assert_attached(env, conf, result, pod)
    env.cnitool("check", conf["name"], pod, cni_args=args)
    env.cnitool("del", conf["name"], pod, cni_args=args)
    assert_detached(env, conf, pod, facts)


def test_mac_capability_from_runtime(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.207.2.0/24", support.unique("mac-"))
    conf["capabilities"] = {"mac": True}
    env.write_conf(conf)
    pod = make_pod()
    mac = "02:00:0a:cf:02:0b"
    result = env.add(conf["name"], pod, cap_args={"mac": mac})
    _, iface = cnienv.pod_iface(result, "eth0", pod)
    assert iface["mac"].lower() == mac, result
    facts = assert_attached(env, conf, result, pod)
    env.cnitool("check", conf["name"], pod, cap_args={"mac": mac})
    env.cnitool("del", conf["name"], pod, cap_args={"mac": mac})
    assert_detached(env, conf, pod, facts)


@needs_cni_11
def test_status_reports_missing_ipam(env: CniEnv) -> None:
    name = support.unique("st-")
    dir11 = env.root / "net.d-1.1"
    conf = _base_conf(env, "10.203.9.0/24", name, "1.1.0")
    conf["ipam"]["type"] = "no-such-ipam"
    env.write_conf(conf, dir11)
    proc = env.cnitool("status", name, conf_dir=dir11, check=False)
    assert proc.returncode != 0, proc
    assert "no-such-ipam" in proc.stderr, proc.stderr


@needs_cni_11
def test_gc_on_unused_network(env: CniEnv) -> None:
    name = support.unique("gcu-")
    dir11 = env.root / "net.d-1.1"
    env.write_conf(_base_conf(env, "10.203.10.0/24", name, "1.1.0"), dir11)
    env.cnitool("gc", name, conf_dir=dir11)
    assert env.host_veths() == []


@pytest.mark.parametrize("ifname", ["eth0", "eth0.100"])
def test_sysctls_in_pod_netns(env: CniEnv, make_pod: Callable[[], str], ifname: str) -> None:
    """Config sysctls (dot and slash form, IFNAME placeholder, dotted ifname) land in the pod netns only."""
    conf = _base_conf(env, "10.207.3.0/24", support.unique("sys-"))
    conf["sysctl"] = {
        "net.ipv4.tcp_keepalive_time": "120",
        "net.ipv4.ip_local_port_range": "20000 40000",
        "net.ipv4.conf.IFNAME.arp_notify": "1",
        f"net/ipv4/conf/{ifname}/arp_ignore": "1",
    }
    env.write_conf(conf)
    host_before = cnienv.read_sysctl(env.host_ns, "net.ipv4.tcp_keepalive_time", ifname)
    pod = make_pod()
    result = env.add(conf["name"], pod, ifname=ifname)
    facts = assert_attached(env, conf, result, pod, ifname)  # reads every key back
    assert cnienv.read_sysctl(env.host_ns, "net.ipv4.tcp_keepalive_time", ifname) == host_before
    env.cnitool("check", conf["name"], pod, ifname=ifname)
    # CHECK notices a sysctl changed behind the plugin's back.
    support.run(cnienv.in_ns(pod.rsplit("/", 1)[-1], "sh", "-c", "echo 7200 > /proc/sys/net/ipv4/tcp_keepalive_time"))
    proc = env.cnitool("check", conf["name"], pod, ifname=ifname, check=False)
    assert proc.returncode != 0 and "tcp_keepalive_time" in proc.stderr, proc
    env.cnitool("del", conf["name"], pod, ifname=ifname)
    assert_detached(env, conf, pod, facts, ifname)


def test_del_without_cached_result(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """A runtime that lost its cache (or never had one) sends DEL without prevResult."""
    conf = _base_conf(env, "10.207.4.0/24", support.unique("nocache-"))
    env.write_conf(conf)
    pod = make_pod()
    facts = assert_attached(env, conf, env.add(conf["name"], pod), pod)
    env.cache_file(conf["name"], facts["cid"]).unlink()
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, pod, facts)


def test_dotted_interface_name(env: CniEnv, make_pod: Callable[[], str]) -> None:
    conf = _base_conf(env, "10.207.5.0/24", support.unique("dot-"))
    env.write_conf(conf)
    pod = make_pod()
    ifname = "eth0.100"
    facts = assert_attached(env, conf, env.add(conf["name"], pod, ifname=ifname), pod, ifname)
    env.cnitool("check", conf["name"], pod, ifname=ifname)
    env.cnitool("del", conf["name"], pod, ifname=ifname)
    assert_detached(env, conf, pod, facts, ifname)


def test_add_into_the_plugins_own_netns_is_refused(env: CniEnv) -> None:
    conf = _base_conf(env, "10.207.6.0/24", support.unique("self-"))
    env.write_conf(conf)
    links_before = cnienv.links(env.host_ns)
    proc = env.cnitool("add", conf["name"], support.netns_path(env.host_ns), check=False)
    assert proc.returncode != 0, proc.stdout
    assert [link["ifname"] for link in cnienv.links(env.host_ns)] == [link["ifname"] for link in links_before]
    assert env.leases(conf["name"]) == {}
    env.cnitool("del", conf["name"], support.netns_path(env.host_ns))
    assert [link["ifname"] for link in cnienv.links(env.host_ns)] == [link["ifname"] for link in links_before]


def test_ips_capability_reaches_ipam(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """runtimeConfig.ips (capability "ips", as podman --ip sends it) is host-local's to use."""
    conf = _base_conf(env, "10.207.7.0/24", support.unique("ips-"))
    conf["capabilities"] = {"ips": True}
    env.write_conf(conf)
    pod = make_pod()
    cap = {"ips": ["10.207.7.42/24"]}
    result = env.add(conf["name"], pod, cap_args=cap)
    assert [ip["address"] for ip in result["ips"]] == ["10.207.7.42/24"], result
    facts = assert_attached(env, conf, result, pod)
    env.cnitool("check", conf["name"], pod, cap_args=cap)
    env.cnitool("del", conf["name"], pod, cap_args=cap)
    assert_detached(env, conf, pod, facts)


def test_del_after_reboot_releases_the_lease(env: CniEnv, make_pod: Callable[[], str]) -> None:
    """After a reboot the pod netns and nsveth's runtime dir (tmpfs /run) are gone, while the
    host-local leases and libcni's cache (on disk) remain; the runtime's DEL must free the lease."""
    conf = _base_conf(env, "10.207.8.0/24", support.unique("boot-"))
    env.write_conf(conf)
    pod = make_pod()
    facts = assert_attached(env, conf, env.add(conf["name"], pod), pod)
    support.netns_delete(pod.rsplit("/", 1)[-1])
    support.run(["ip", "-n", env.host_ns, "link", "del", facts["host_veths"][0]], check=False)
    shutil.rmtree(env.runtime_dir)
    assert facts["ips"][0] in env.leases(conf["name"])
    env.cnitool("del", conf["name"], pod)
    assert_detached(env, conf, None, facts)
