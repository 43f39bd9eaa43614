"""ipMasq through the real kernel: traffic leaving the pod subnet is masqueraded, and DEL/GC remove exactly that pod's rules."""

from __future__ import annotations

import contextlib
import json
import os
import re

import pytest
from nsveth.errors import Code
from support import Netns, netns, sh, unique, with_prev

OUTSIDE = "192.168.77.2"


def nft_rules(host: Netns) -> list[dict]:
    """Rules of the nsveth table in the host netns, as nft's JSON (empty without the table)."""
    proc = host.run("nft", "-j", "list", "table", "inet", "nsveth", check=False)
    if proc.returncode != 0:
        return []
    return [i["rule"] for i in json.loads(proc.stdout)["nftables"] if "rule" in i]


def masq_sources(host: Netns) -> set[str]:
    """Pod addresses that have a masquerade rule (nftables)."""
    out = set()
    for rule in nft_rules(host):
        exprs = rule["expr"]
        if any("masquerade" in e for e in exprs):
            for e in exprs:
                m = e.get("match", {})
                if m.get("left", {}).get("payload", {}).get("field") == "saddr" and m.get("op") == "==":
                    out.add(m["right"])
    return out


def rule_chain(host: Netns) -> str:
    (chain,) = {r["chain"] for r in nft_rules(host)}
    return chain


def iptables_nat(host: Netns, tool: str = "iptables") -> str:
    return host.run(tool, "-w", "5", "-t", "nat", "-S").stdout


@contextlib.contextmanager
def outside(host: Netns):
    """A netns reachable from the host netns on 192.168.77.0/24, with no route back to any pod subnet."""
    with netns("nsvo-") as out:
        name = unique("nsvx")
        host.run("ip", "link", "add", name, "type", "veth", "peer", "name", "eth9", "netns", out.name)
        host.run("ip", "addr", "add", "192.168.77.1/24", "dev", name)
        host.run("ip", "link", "set", name, "up")
        out.run("ip", "addr", "add", f"{OUTSIDE}/24", "dev", "eth9")
        out.run("ip", "link", "set", "eth9", "up")
        try:
            yield out
        finally:
            host.run("ip", "link", "del", name, check=False)


def mode_conf(net, mode: str, **fields):
    if mode == "bridge":
        fields = {"mode": "bridge", "bridge": unique("nsvb"), "isGateway": True, **fields}
    return net.conf(**fields)


def add(plugin, conf, cid, pod):
    reply = plugin.run("ADD", conf, container_id=cid, netns=pod.path)
    assert reply.status == 0, reply.stdout
    return reply.json


@pytest.mark.parametrize("mode", ["ptp", "bridge"])
def test_masquerade_reaches_outside_and_del_removes_it(plugin, net, pod_ns, mode):
    conf = mode_conf(net, mode, ipMasq=True)
    with outside(plugin.host):
        res = add(plugin, conf, "ctr-masq", pod_ns)
        assert masq_sources(plugin.host) == {"10.77.0.2"}
        # The outside has no route to 10.77.0.0/24: a reply proves the source was rewritten.
        assert pod_ns.run("ping", "-c1", "-W2", OUTSIDE).returncode == 0
        # Pod-to-gateway traffic stays inside the subnet and is not translated.
        (rule,) = nft_rules(plugin.host)
        assert "10.77.0.0" in json.dumps(rule) and "224.0.0.0" in json.dumps(rule)
        prev = with_prev(conf, res)
        assert plugin.run("CHECK", prev, container_id="ctr-masq", netns=pod_ns.path).status == 0
        plugin.host.run("nft", "flush", "chain", "inet", "nsveth", rule_chain(plugin.host))
        chk = plugin.run("CHECK", prev, container_id="ctr-masq", netns=pod_ns.path)
        assert chk.status != 0 and "masquerade rule for 10.77.0.2 is missing" in chk.json["msg"], chk.stdout
        for _ in range(2):
            assert plugin.run("DEL", conf, container_id="ctr-masq", netns=pod_ns.path).status == 0
            assert masq_sources(plugin.host) == set()


@pytest.mark.parametrize("mode", ["ptp", "bridge"])
def test_without_ipmasq_nothing_is_translated(inproc, net, pod_ns, mode):
    conf = mode_conf(net, mode)
    with outside(inproc.host):
        add(inproc, conf, "ctr-nomasq", pod_ns)
        assert nft_rules(inproc.host) == []
        assert pod_ns.run("ping", "-c1", "-W1", OUTSIDE, check=False).returncode != 0
        assert inproc.run("DEL", conf, container_id="ctr-nomasq", netns=pod_ns.path).status == 0


@pytest.mark.parametrize("mode", ["ptp", "bridge"])
def test_del_after_netns_is_gone_removes_exactly_that_pods_rules(plugin, net, mode):
    conf = mode_conf(net, mode, ipMasq=True)
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        add(plugin, conf, "ctr-gone", a)
        add(plugin, conf, "ctr-stays", b)
        assert masq_sources(plugin.host) == {"10.77.0.2", "10.77.0.3"}
        a.delete()  # `ip netns del`: the pod and its addresses are gone before DEL
        reply = plugin.run("DEL", conf, container_id="ctr-gone", netns=a.path)
        assert reply.status == 0, reply.stdout
        assert masq_sources(plugin.host) == {"10.77.0.3"}
        assert net.leases() == ["10.77.0.3"]
        assert plugin.run("DEL", conf, container_id="ctr-stays", netns=b.path).status == 0
        assert masq_sources(plugin.host) == set()
    finally:
        a.delete()
        b.delete()


def test_dual_stack_rules(inproc, net, pod_ns):
    conf = mode_conf(net, "bridge", ipMasq=True)
    conf["ipam"] = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.79.0.0/24"}], [{"subnet": "fd00:79::/64"}]],
        "dataDir": net.ipam_dir,
    }
    add(inproc, conf, "ctr-ds", pod_ns)
    assert masq_sources(inproc.host) == {"10.79.0.2", "fd00:79::2"}
    text = inproc.host.run("nft", "list", "table", "inet", "nsveth").stdout
    assert "ip6 daddr != { fd00:79::/64, ff00::/8 } masquerade" in text
    assert inproc.run("DEL", conf, container_id="ctr-ds", netns=pod_ns.path).status == 0
    assert masq_sources(inproc.host) == set()


@pytest.mark.parametrize("mode", ["ptp", "bridge"])
def test_iptables_backend(plugin, net, mode):
    conf = mode_conf(net, mode, ipMasq=True, ipMasqBackend="iptables")
    a, b = Netns("nsvp-"), Netns("nsvp-")
    try:
        with outside(plugin.host):
            ra = add(plugin, conf, "ctr-ipt-a", a)
            rb = add(plugin, conf, "ctr-ipt-b", b)
            assert plugin.run("CHECK", with_prev(conf, ra), container_id="ctr-ipt-a", netns=a.path).status == 0
            rules = iptables_nat(plugin.host)
            assert "-A POSTROUTING -s 10.77.0.2/32" in rules and "-A POSTROUTING -s 10.77.0.3/32" in rules
            assert "-d 10.77.0.0/24" in rules and "! -d 224.0.0.0/4" in rules and "MASQUERADE" in rules
            assert nft_rules(plugin.host) == []  # not the nft table: iptables' own
            assert a.run("ping", "-c1", "-W2", OUTSIDE).returncode == 0
            a.delete()
            assert plugin.run("DEL", conf, container_id="ctr-ipt-a", netns=a.path).status == 0
            rules = iptables_nat(plugin.host)
            assert "10.77.0.2" not in rules and "-A POSTROUTING -s 10.77.0.3/32" in rules
            jump = next(line for line in rules.splitlines() if line.startswith("-A POSTROUTING -s 10.77.0.3/32"))
            plugin.host.run("sh", "-c", f"iptables -w 5 -t nat {jump.replace('-A ', '-D ', 1)}")
            chk = plugin.run("CHECK", with_prev(conf, rb), container_id="ctr-ipt-b", netns=b.path)
            assert chk.status != 0 and "masquerade rule for 10.77.0.3 is missing" in chk.json["msg"], chk.stdout
            assert plugin.run("DEL", conf, container_id="ctr-ipt-b", netns=b.path).status == 0
            assert plugin.run("DEL", conf, container_id="ctr-ipt-b", netns=b.path).status == 0
            rules = iptables_nat(plugin.host)
            assert "NSV-" not in rules and "10.77.0" not in rules
    finally:
        a.delete()
        b.delete()


def test_gc_removes_rules_of_stale_attachments_and_orphans(inproc, net):
    conf = mode_conf(net, "bridge", ipMasq=True, cniVersion="1.1.0")
    a, b, c, d = Netns("nsvp-"), Netns("nsvp-"), Netns("nsvp-"), Netns("nsvp-")
    try:
        add(inproc, conf, "ctr-valid", a)
        add(inproc, conf, "ctr-stale", b)
        add(inproc, conf, "ctr-orphan", c)
        # A lost state record: GC still finds the orphan's chain by its network-prefixed name.
        os.unlink(os.path.join(net.runtime_dir, net.name, "ctr-orphan:eth0.json"))
        # Another network's rules on the same host are none of this GC's business.
        other = {**mode_conf(net, "ptp", ipMasq=True, cniVersion="1.1.0"), "name": unique("other-")}
        other["ipam"] = {**other["ipam"], "ranges": [[{"subnet": "10.88.0.0/24"}]], "routes": []}
        add(inproc, other, "ctr-other", d)
        b.delete()
        gc = {**conf, "cni.dev/valid-attachments": [{"containerID": "ctr-valid", "ifname": "eth0"}]}
        reply = inproc.run("GC", gc)
        assert reply.status == 0, reply.stdout
        assert masq_sources(inproc.host) == {"10.77.0.2", "10.88.0.2"}
        assert net.state_files() == ["ctr-valid:eth0.json"]
        assert inproc.run("DEL", conf, container_id="ctr-valid", netns=a.path).status == 0
        assert inproc.run("DEL", other, container_id="ctr-other", netns=d.path).status == 0
        assert masq_sources(inproc.host) == set()
    finally:
        for ns in (a, b, c, d):
            ns.delete()


def test_failed_add_removes_its_rules(inproc, net, pod_ns):
    conf = mode_conf(net, "bridge", ipMasq=True)
    # A route whose gateway is not on any subnet of the pod: the pod side fails after masquerading was set up.
    conf["ipam"]["routes"] = [{"dst": "192.0.2.0/24", "gw": "198.51.100.1"}]
    reply = inproc.run("ADD", conf, container_id="ctr-fail", netns=pod_ns.path)
    assert reply.status != 0 and reply.code == Code.KERNEL, reply.stdout
    assert masq_sources(inproc.host) == set()
    assert net.leases() == [] and net.state_files() == [] and "eth0" not in pod_ns.links()


def source_counter(out: Netns, source: str) -> int:
    """Packets the outside netns received from `source` (its counter rule, see `count_sources`)."""
    text = out.run("nft", "-j", "list", "table", "ip", "nsvtcount").stdout
    for item in json.loads(text)["nftables"]:
        rule = item.get("rule")
        if rule and any(e.get("match", {}).get("right") == source for e in rule["expr"]):
            return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    raise AssertionError(f"no counter for {source}")


def count_sources(out: Netns, *sources: str) -> None:
    """A counter per source address on the outside netns's input hook."""
    rules = "".join(f"    ip saddr {s} counter\n" for s in sources)
    ruleset = f"table ip nsvtcount {{\n  chain in {{\n    type filter hook input priority 0;\n{rules}  }}\n}}\n"
    sh("ip", "netns", "exec", out.name, "nft", "-f", "-", input=ruleset)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_non_masquerade_cidrs_keep_the_pod_source(plugin, net, pod_ns, backend):
    conf = mode_conf(
        net, "ptp", ipMasq=True, ipMasqBackend=backend, cniVersion="1.1.0", nonMasqueradeCIDRs=["192.168.77.0/24", "fd00:99::/48"]
    )
    with outside(plugin.host) as out:
        # This destination knows the way back to the pods (as another node of the cluster would).
        out.run("ip", "route", "add", "10.77.0.0/24", "via", "192.168.77.1")
        count_sources(out, "10.77.0.2", "192.168.77.1")
        add(plugin, conf, "ctr-keep", pod_ns)
        if backend == "nftables":
            text = plugin.host.run("nft", "list", "table", "inet", "nsveth").stdout
            assert "ip daddr != { 10.77.0.0/24, 192.168.77.0/24, 224.0.0.0/4 } masquerade" in text, text
        else:
            rules = iptables_nat(plugin.host)
            chain = next(line.split()[-1] for line in rules.splitlines() if line.startswith("-N NSV-"))
            mine = [line for line in rules.splitlines() if line.startswith(f"-A {chain} ")]
            assert [re.sub(r' -m comment --comment "[^"]*"', "", line) for line in mine] == [
                f"-A {chain} -d 10.77.0.0/24 -j ACCEPT",
                f"-A {chain} -d 192.168.77.0/24 -j ACCEPT",
                f"-A {chain} ! -d 224.0.0.0/4 -j MASQUERADE",
            ], mine
        # The ping arrives with the pod's own address, not the host's.
        assert pod_ns.run("ping", "-c1", "-W2", OUTSIDE).returncode == 0
        assert source_counter(out, "10.77.0.2") >= 1 and source_counter(out, "192.168.77.1") == 0
        gc = {**conf, "cni.dev/valid-attachments": []}
        reply = plugin.run("GC", gc)
        assert reply.status == 0, reply.stdout
        assert nft_rules(plugin.host) == [] and "NSV-" not in iptables_nat(plugin.host)
        assert plugin.run("DEL", conf, container_id="ctr-keep", netns=pod_ns.path).status == 0
        assert nft_rules(plugin.host) == [] and "NSV-" not in iptables_nat(plugin.host)
