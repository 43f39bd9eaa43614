"""masq.py's pure parts: chain names, the nft transactions, backend choice (no root, no nft)."""

from __future__ import annotations

import ipaddress
import json

import pytest
from nsveth import masq
from nsveth.errors import CNIError


def rules_of(batch: dict) -> list[dict]:
    return [c["add"]["rule"] for c in batch["nftables"] if "add" in c and "rule" in c["add"]]


def test_chain_names_are_deterministic_and_distinct():
    a = masq.nft_chain("net", "cid", "eth0")
    assert a == masq.nft_chain("net", "cid", "eth0")
    assert len({a, masq.nft_chain("net", "cid", "eth1"), masq.nft_chain("net", "cid2", "eth0"), masq.nft_chain("net2", "cid", "eth0")}) == 4
    assert a.startswith("net-") and len(a) == len("net-") + 16
    ipt = masq.iptables_chain("a-very-long-network-name" * 3, "c" * 64, "eth0")
    assert ipt.startswith("NSV-") and len(ipt) == 28
    assert ipt != masq.iptables_chain("other", "c" * 64, "eth0")


def test_is_chain_of_matches_only_that_network():
    chain = masq.nft_chain("a-b", "cid", "eth0")
    assert masq.is_chain_of("a-b", chain)
    assert not masq.is_chain_of("a", chain)  # a network name that is a prefix of another
    assert not masq.is_chain_of("b", chain)
    assert not masq.is_chain_of("a-b", "a-b-nothex0000000000")
    assert not masq.is_chain_of("a-b", "a-b-abc")


def test_add_batch_one_rule_per_address():
    ips = [ipaddress.ip_interface("10.1.2.3/24"), ipaddress.ip_interface("fd00::5/64")]
    batch = masq.nft_add_batch("net", "cid", "eth0", ips)
    kinds = [next(iter(c)) + ":" + next(iter(next(iter(c.values())))) for c in batch["nftables"]]
    assert kinds == ["add:table", "add:chain", "flush:chain", "add:rule", "add:rule"]
    chain = batch["nftables"][1]["add"]["chain"]
    assert chain["type"] == "nat" and chain["hook"] == "postrouting" and chain["prio"] == 100
    assert chain["name"] == masq.nft_chain("net", "cid", "eth0")
    v4, v6 = rules_of(batch)
    assert v4["expr"][0]["match"] == {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.1.2.3"}
    assert v4["expr"][1]["match"]["op"] == "!="
    assert v4["expr"][1]["match"]["right"]["set"] == [
        {"prefix": {"addr": "10.1.2.0", "len": 24}},
        {"prefix": {"addr": "224.0.0.0", "len": 4}},
    ]
    assert v4["expr"][2] == {"masquerade": None}
    assert v6["expr"][0]["match"]["left"]["payload"]["protocol"] == "ip6"
    assert v6["expr"][1]["match"]["right"]["set"][1] == {"prefix": {"addr": "ff00::", "len": 8}}
    assert v4["comment"] == "nsveth net cid eth0"
    json.dumps(batch)  # it is what goes to `nft -j -f -`


def test_delete_batch_is_idempotent_by_construction():
    batch = masq.nft_delete_batch(["x-1", "x-2"])
    ops = [(next(iter(c)), next(iter(next(iter(c.values()))))) for c in batch["nftables"]]
    # The chain is added (a no-op when present) before flush and delete, so a
    # missing chain never fails the transaction.
    assert ops == [("add", "table")] + [("add", "chain"), ("flush", "chain"), ("delete", "chain")] * 2


def test_comment_fits_nft_limit():
    assert len(masq.comment("n" * 100, "c" * 64, "eth0")) <= 127


def test_backend_choice(monkeypatch):
    assert masq.backend("iptables", path="") == "iptables"
    assert masq.backend("nftables", path="") == "nftables"
    monkeypatch.setattr(masq, "_which", lambda tool, path: "/usr/sbin/nft" if tool == "nft" else None)
    assert masq.backend(None, path="") == "nftables"
    monkeypatch.setattr(masq, "_which", lambda tool, path: "/usr/sbin/iptables" if tool == "iptables" else None)
    assert masq.backend(None, path="") == "iptables"
    monkeypatch.setattr(masq, "_which", lambda tool, path: None)
    with pytest.raises(CNIError) as e:
        masq.backend(None, path="")
    assert "nft or iptables" in e.value.msg


def test_tools_are_found_in_the_requests_path_not_the_processs(tmp_path, monkeypatch):
    """A warm server serves runtimes with different PATHs: the request's is searched, never os.environ's."""
    tools = tmp_path / "bin"
    tools.mkdir()
    tool = tools / "nsveth-test-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    assert masq._which("nsveth-test-tool", "") is None
    assert masq._which("nsveth-test-tool", f"/nonexistent:{tools}") == str(tool)


def test_target_parsing_of_iptables_listing():
    words = masq._split('-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "nsveth n c eth0" -j NSV-abc')
    assert words[-2:] == ["-j", "NSV-abc"] and masq._target(words) == "NSV-abc"
    assert masq._target(["-A", "POSTROUTING"]) is None


def test_add_batch_exempts_non_masquerade_cidrs_of_the_family():
    ips = [ipaddress.ip_interface("10.1.2.3/24"), ipaddress.ip_interface("fd00::5/64")]
    keep = [ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00:1::/48")]
    v4, v6 = rules_of(masq.nft_add_batch("net", "cid", "eth0", ips, keep))
    # Collapsed (10.0.0.0/8 contains the pod subnet): the set holds no overlapping intervals.
    assert v4["expr"][1]["match"]["right"]["set"] == [
        {"prefix": {"addr": "10.0.0.0", "len": 8}},
        {"prefix": {"addr": "192.168.0.0", "len": 16}},
        {"prefix": {"addr": "224.0.0.0", "len": 4}},
    ]
    assert v6["expr"][1]["match"]["right"]["set"] == [
        {"prefix": {"addr": "fd00::", "len": 64}},
        {"prefix": {"addr": "fd00:1::", "len": 48}},
        {"prefix": {"addr": "ff00::", "len": 8}},
    ]
