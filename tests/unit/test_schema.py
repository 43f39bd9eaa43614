"""schema.json is a valid Draft 2020-12 schema, the examples validate, and schema.validate's error shape."""

from __future__ import annotations

import json
import os
import re

import pytest
from jsonschema import Draft202012Validator
from nsveth import config, schema
from nsveth.errors import CNIError, Code
from support import examples

# Network configs only (conf-examples/ also holds e.g. a sysctl allowlist, *.txt).
EXAMPLES = examples(".conf", ".conflist", ".json")


def _nsveth_entries(path: str) -> list[tuple[str, dict]]:
    """(label, config) for every nsveth config in an example file, as the plugin would receive it."""
    with open(path, "rb") as f:
        doc = config.decode(f.read())
    if "plugins" not in doc:
        return [(os.path.basename(path), doc)]
    out = []
    for n, plugin in enumerate(doc["plugins"]):
        if plugin.get("type") != "nsveth":
            continue
        # libcni injects the list's name and cniVersion into each plugin's config.
        entry = {**plugin, "name": doc["name"], "cniVersion": doc["cniVersion"]}
        out.append((f"{os.path.basename(path)}[{n}]", entry))
    return out


def test_schema_is_valid_draft_2020_12():
    s = schema.load()
    Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_patterns_compile():
    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "pattern":
                    yield v
                else:
                    yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    patterns = list(walk(schema.load()))
    assert patterns
    for p in patterns:
        re.compile(p)


def test_schema_lists_runtime_injected_fields():
    props = schema.load()["properties"]
    for field in ("cniVersion", "name", "type", "runtimeConfig", "prevResult", "args", "cni.dev/valid-attachments", "cni.dev/attachments"):
        assert field in props


def test_every_property_documented():
    props = schema.load()["properties"]
    missing = [k for k, v in props.items() if "description" not in v]
    assert missing == []


def test_examples_present():
    assert EXAMPLES, "conf-examples/ is empty"


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_validates(path):
    entries = _nsveth_entries(path)
    assert entries, f"{path} has no nsveth config"
    validator = Draft202012Validator(schema.load())
    for label, entry in entries:
        errors = [e.message for e in validator.iter_errors(entry)]
        assert errors == [], label
        schema.validate(entry)  # nsveth's own validation (stricter integer type)


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_loads(path):
    from nsveth import request

    req = request.parse({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/n", "CNI_IFNAME": "eth0", "CNI_PATH": "/p"})
    for _, entry in _nsveth_entries(path):
        conf = config.load(json.dumps(entry).encode(), req)
        assert conf.name == entry["name"]


BASE = {"cniVersion": "1.1.0", "name": "n", "type": "nsveth", "ipam": {"type": "host-local"}}


def test_validate_accepts_minimal():
    schema.validate(dict(BASE))


@pytest.mark.parametrize(
    "extra,code,names",
    [
        ({"bogus": 1}, Code.UNSUPPORTED_FIELD, ["bogus"]),
        ({"bogus": 1, "mtu": 1}, Code.UNSUPPORTED_FIELD, ["bogus"]),  # unknown fields are reported first
        ({"mtu": 1}, Code.INVALID_CONFIG, ["mtu"]),
        ({"advertise": {"count": 9}}, Code.INVALID_CONFIG, ["advertise.count"]),
        (
            {"cni.dev/valid-attachments": [{"containerID": "", "ifname": "eth0"}]},
            Code.INVALID_CONFIG,
            ["cni.dev/valid-attachments[0].containerID"],
        ),
    ],
)
def test_validate_error_names_path(extra, code, names):
    with pytest.raises(CNIError) as info:
        schema.validate({**BASE, **extra})
    assert info.value.code == code
    for name in names:
        assert name in info.value.msg


def test_validate_reports_at_most_five():
    bad = {**BASE, "mtu": 1, "vlan": -1, "logLevel": "x", "runtimeDir": "r", "logFile": "l", "mode": "m", "ipMasq": 1}
    with pytest.raises(CNIError) as info:
        schema.validate(bad)
    assert info.value.code == Code.INVALID_CONFIG
    assert len(info.value.msg.split("; ")) == 5


def test_validate_long_messages_shortened():
    with pytest.raises(CNIError) as info:
        schema.validate({**BASE, "dns": {"nameservers": "x" * 5000}})
    assert len(info.value.msg) < 500


def test_unsupported_details_bounded():
    with pytest.raises(CNIError) as info:
        schema.validate({**BASE, "bogus": "x" * 10000})
    assert info.value.code == Code.UNSUPPORTED_FIELD
    assert len(info.value.details) <= 2000
