"""conf-examples/: recipes an operator copies as they are.

Each is a conflist (podman reads only those) at cniVersion 1.0.0 (what Debian
12's podman, containerd and libcni read; one that needs 1.1.0 says so in its
file name), on a subnet of its own that no runtime's default network uses, and
together they cover the recipes the README promises. Each nsveth entry goes
through ADD, CHECK and DEL with the built executable, as libcni would call it,
with IPAM and runtime state moved to a temp dir. (tests/e2e runs the files
unchanged, whole chains included, through cnitool, containerd and podman.)
"""

from __future__ import annotations

import ipaddress
import json
import os

import pytest
from support import SHIPPED_ALLOWLIST, examples, host_veths, load_example, with_prev

EXAMPLES = examples(".conflist")
ALLOWLIST = SHIPPED_ALLOWLIST
# Where the README's install puts allowlist-k8s-safe.txt (nsveth's default path).
INSTALLED_ALLOWLIST = "/etc/cni/nsveth/allowlist.conf"
# Default networks of the runtimes: podman's "podman" network, containerd's
# example config (and nerdctl's default bridge).
RUNTIME_DEFAULTS = [ipaddress.ip_network("10.88.0.0/16"), ipaddress.ip_network("10.4.0.0/16"),
                    ipaddress.ip_network("10.4.0.0/24")]


def nsveth_configs(path: str) -> list[dict]:
    doc = load_example(path)
    return [{**p, "name": doc["name"], "cniVersion": doc["cniVersion"]}
            for p in doc["plugins"] if p.get("type") == "nsveth"]


def subnets(path: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(r["subnet"]) for conf in nsveth_configs(path)
            for rs in conf["ipam"].get("ranges", []) for r in rs]


def allowed_patterns() -> list[str]:
    with open(ALLOWLIST) as f:
        return [p.strip() for line in f for p in line.split("#", 1)[0].split(",") if p.strip()]


def test_examples_are_conflists_only():
    others = [os.path.basename(p) for p in examples("") if not p.endswith(".conflist") and p != ALLOWLIST]
    # podman ignores *.conf; a *.json or *.conf next to them would be loaded by libcni as a network.
    assert others == []
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_version_is_what_debian_runtimes_read(path):
    doc = load_example(path)
    if "1.1.0" in os.path.basename(path):
        assert doc["cniVersion"] == "1.1.0"
    else:
        assert doc["cniVersion"] == "1.0.0", "Debian 12's libcni 1.1.2 cannot read a 1.1.0 result"
    assert doc["plugins"][0]["type"] == "nsveth", "nsveth creates the interface: first in the chain"


def test_example_subnets_are_distinct_and_not_a_runtime_default():
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for path in EXAMPLES:
        nets = subnets(path)
        assert nets, path
        for net in nets:
            for other_path, other in seen + [("runtime default", d) for d in RUNTIME_DEFAULTS]:
                assert not (net.version == other.version and net.overlaps(other)), (path, net, other_path, other)
        seen += [(path, n) for n in nets]
    names = [load_example(p)["name"] for p in EXAMPLES]
    assert len(set(names)) == len(names)
    bridges = [c.get("bridge", "nsveth0") for p in EXAMPLES for c in nsveth_configs(p) if c.get("mode") == "bridge"]
    assert len(set(bridges)) == len(bridges)


def test_examples_cover_the_recipes():
    confs = {os.path.basename(p): (load_example(p), nsveth_configs(p)[0]) for p in EXAMPLES}

    def having(pred) -> list[str]:
        return [n for n, (doc, main) in confs.items() if pred(doc, main)]

    ptp = lambda main: main.get("mode", "ptp") == "ptp"  # noqa: E731
    assert having(lambda doc, main: ptp(main) and main.get("ipMasq")), "ptp with outbound access"
    assert having(lambda doc, main: main.get("mode") == "bridge" and main.get("ipMasq"))
    assert having(lambda doc, main: ptp(main) and len({ipaddress.ip_network(r["subnet"]).version
                                                     for rs in main["ipam"]["ranges"] for r in rs}) == 2)
    assert having(lambda doc, main: main.get("sysctl") and main.get("sysctlAllowlist") == INSTALLED_ALLOWLIST)
    assert having(lambda doc, main: "firewall" in [p["type"] for p in doc["plugins"]] and main.get("ipMasq"))


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_sysctls_are_allowed_by_the_shipped_allowlist(path):
    patterns = allowed_patterns()
    for conf in nsveth_configs(path):
        for key in conf.get("sysctl", {}):
            assert any(key == p or (p.endswith("*") and key.startswith(p[:-1])) for p in patterns), key


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example(exe, pod_ns, tmp_path, path):
    confs = nsveth_configs(path)
    assert confs, f"{path} has no nsveth entry"
    for n, conf in enumerate(confs):
        conf = json.loads(json.dumps(conf))
        conf["runtimeDir"] = str(tmp_path / "run")
        conf["ipam"]["dataDir"] = str(tmp_path / "ipam")
        if conf.get("sysctlAllowlist") == INSTALLED_ALLOWLIST:
            conf["sysctlAllowlist"] = ALLOWLIST  # the file the install copies there
        cid = f"ctr-example-{n}"
        add = exe.run("ADD", conf, container_id=cid, netns=pod_ns.path)
        assert add.status == 0, add.stdout
        chk = exe.run("CHECK", with_prev(conf, add.json), container_id=cid, netns=pod_ns.path)
        assert chk.status == 0, chk.stdout
        assert exe.run("DEL", with_prev(conf, add.json), container_id=cid, netns=pod_ns.path).status == 0
        # Bridge mode leaves its bridge (by design); no veth may stay.
        links = exe.host.links()
        assert [v for v in host_veths(exe.host) if links[v].get("linkinfo", {}).get("info_kind") != "bridge"] == []
