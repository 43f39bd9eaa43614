"""Rendering the ConfigMap's conflist template (pure, no file system)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import support
from deploy_support import REPO, configmap_data, configmap_template
from nsveth_install import InstallError
from nsveth_install.conflist import NodeFacts, load_template, parse_cluster_cidrs, parse_pod_cidrs, render, required_plugins

SCHEMA = REPO / "plugin" / "nsveth" / "schema.json"


def cluster_cidrs() -> tuple:
    return parse_cluster_cidrs([configmap_data()["clusterCIDRs"]])


def rendered(*cidrs: str) -> dict:
    template = load_template(configmap_template().encode(), "ConfigMap")
    return json.loads(render(template, NodeFacts("node-1", parse_pod_cidrs(list(cidrs)), cluster_cidrs())))



def nsveth_entry(conf: dict) -> dict:
    assert conf["plugins"][0]["type"] == "nsveth"
    return conf["plugins"][0]


def test_configmap_template_renders_ipv4() -> None:
    conf = rendered("10.244.3.0/24")
    assert conf["cniVersion"] and conf["name"] == "nsveth"
    entry = nsveth_entry(conf)
    assert entry["mode"] == "ptp"
    assert isinstance(entry["mtu"], int) and 576 <= entry["mtu"] <= 65535
    assert entry["ipam"]["type"] == "host-local"
    assert entry["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert entry["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert [p["type"] for p in conf["plugins"]] == ["nsveth", "portmap"]
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}
    assert required_plugins(json.dumps(conf).encode()) == ["nsveth", "host-local", "portmap"]


def test_configmap_template_renders_dual_stack() -> None:
    entry = nsveth_entry(rendered("10.244.3.0/24,fd00:10:244:3::/64"))
    assert entry["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}], [{"subnet": "fd00:10:244:3::/64"}]]
    assert entry["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_configmap_template_renders_ipv6_only() -> None:
    entry = nsveth_entry(rendered("fd00:10:244:3::/64"))
    assert entry["ipam"]["ranges"] == [[{"subnet": "fd00:10:244:3::/64"}]]
    assert entry["ipam"]["routes"] == [{"dst": "::/0"}]


def test_configmap_template_masquerades_all_but_the_cluster_cidr() -> None:
    entry = nsveth_entry(rendered("10.244.3.0/24"))
    assert entry["ipMasq"] is True
    assert entry["nonMasqueradeCIDRs"] == [configmap_data()["clusterCIDRs"]] == ["10.244.0.0/16"]
    # Dual-stack clusters list one CIDR per family, comma-separated or one per line.
    assert [str(n) for n in parse_cluster_cidrs(["10.244.0.0/16, fd00:10:244::/56\n# note\n10.96.0.0/12"])] == [
        "10.244.0.0/16", "fd00:10:244::/56", "10.96.0.0/12"]


def test_cluster_cidr_is_required_when_the_template_names_it() -> None:
    template = load_template(configmap_template().encode(), "ConfigMap")
    with pytest.raises(InstallError, match="needs the cluster CIDR"):
        render(template, NodeFacts("n", parse_pod_cidrs(["10.0.0.0/24"])))
    with pytest.raises(InstallError, match="invalid cluster CIDR '10.244.0.1/16'"):
        parse_cluster_cidrs(["10.244.0.1/16"])


def test_configmap_ships_the_kubernetes_safe_allowlist() -> None:
    def patterns(text: str) -> list[str]:
        return [p.strip() for line in text.splitlines() for p in line.split("#", 1)[0].split(",") if p.strip()]

    shipped = Path(support.SHIPPED_ALLOWLIST).read_text()
    assert patterns(configmap_data()["allowlist.conf"]) == patterns(shipped)
    assert len(patterns(shipped)) >= 13


def test_rendering_is_deterministic() -> None:
    template = load_template(configmap_template().encode(), "ConfigMap")
    facts = NodeFacts("n", parse_pod_cidrs(["10.0.0.0/24"]), cluster_cidrs())
    assert render(template, facts) == render(template, facts)


def test_scalar_placeholders_and_templates_without_cidr() -> None:
    template = load_template(json.dumps({
        "cniVersion": "1.0.0", "name": "n",
        "plugins": [{"type": "nsveth", "node": "@nsveth:nodeName", "ipam": {"type": "static"}}],
    }).encode(), "t")
    # No CIDR placeholder: no pod CIDR is needed at all.
    conf = json.loads(render(template, NodeFacts("node-7", ())))
    assert conf["plugins"][0]["node"] == "node-7"

    template = load_template(b'{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nsveth", '
                             b'"subnet": "@nsveth:podCIDR"}]}', "t")
    assert json.loads(render(template, NodeFacts("n", parse_pod_cidrs(["fd00::/64", "10.0.0.0/8"]))))[
        "plugins"][0]["subnet"] == "fd00::/64"
    with pytest.raises(InstallError, match="needs the node's pod CIDR"):
        render(template, NodeFacts("n", ()))


@pytest.mark.parametrize("bad,message", [
    ("10.0.0.0/33", "invalid pod CIDR"),
    ("10.0.0.1/24", "host bits set"),
    ("banana", "invalid pod CIDR 'banana'"),
    ("fd00::/64,fd01::/64", "more than one IPv6"),
])
def test_bad_pod_cidrs(bad: str, message: str) -> None:
    with pytest.raises(InstallError, match=message):
        parse_pod_cidrs([bad])


@pytest.mark.skipif(not SCHEMA.exists(), reason="plugin/nsveth/schema.json not on this branch yet")
@pytest.mark.parametrize("cidrs", [["10.244.3.0/24"], ["10.244.3.0/24", "fd00:10:244:3::/64"]])
def test_rendered_nsveth_entry_matches_the_plugin_schema(cidrs: list[str]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    conf = rendered(*cidrs)
    # The runtime hands the plugin its entry plus the list's cniVersion and name.
    entry = {"cniVersion": conf["cniVersion"], "name": conf["name"], **nsveth_entry(conf)}
    jsonschema.validate(entry, schema)
