"""Hypothesis strategies for everything nsveth reads from outside.

Two families:
- raw: arbitrary bytes / text / JSON on stdin, arbitrary CNI_* values in the
  environment (what a broken runtime or a hand-written config produces);
- structure-aware: a valid config and environment for a command (ptp, dual
  stack, bridge, sysctls, MAC, DNS, advertise, prevResult, GC attachments),
  then exactly one thing broken: one field replaced, deleted, added or
  re-typed anywhere in the document (focusable on prevResult, runtimeConfig,
  args, ipam), one environment variable changed, or the serialized bytes
  damaged (truncated, spliced, a duplicate key, a BOM, deep nesting).

Values are written with the placeholders of world.py (@POD@, @CNIPATH@, ...).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from nsveth import versions
from world import SUBNET4, SUBNET6, SUPPORTED, Case

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
CRASH_ENV = "NSVETH_TEST_CRASH_AT"

EDGE_STRINGS = (
    "", " ", "\t", ".", "..", "/", "a" * 15, "a" * 16, "a" * 300, "é" * 8, "\u202e", "\ufeff", "\\", "%s", "${HOME}",
    "eth0", "lo", "nsveth0", "nsrbr0", "0", "-1", "1.1.0", "0.1.0", "0.2.0", "9.9.9", "host-local", "nsveth", "ptp",
    "bridge", "10.199.0.0/24", "10.199.0.7/24", "0.0.0.0/0", "::/0", "fd00:199::/64", "fd00:199::9/64", "10.199.0.1",
    "10.199.0.255", "fe80::1", "256.1.1.1", "10.199.0.0/33", "::ffff:10.199.0.1", "224.0.0.1/32",
    "de:ad:be:ef:00:01", "0a:58:0a:c7:00:05", "01:00:5e:00:00:01", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff",
    "0A-58-0A-C7-00-05", "@SANDBOX@/x", "@SANDBOX@", "@FIFO@", "@REGULAR@", "@POD@", "@HOST@", "/dev/zero",
    "/proc/self/ns/net", "relative/path", "a;b=c", "K=V", "null", "{}", "[]", "true", "net.ipv4.ip_forward",
    "net.ipv4.conf.eth0.arp_notify", "net/ipv4/ip_forward", "kernel.hostname", "net.ipv4.conf.all.forwarding",
)
EDGE_INTS = (0, -1, 1, 2, 3, 4, 67, 68, 99, 100, 1280, 1500, 2000, 2001, 4094, 4095, 9000, 65535, 65536,
             2**31 - 1, 2**31, 2**32, 2**63, -(2**63), 2**64, 10**30)
KNOWN_KEYS = (
    "cniVersion", "cniVersions", "name", "type", "ipam", "mode", "mtu", "dns", "ipMasq", "ipMasqBackend", "bridge",
    "isGateway", "isDefaultGateway", "forceAddress", "hairpinMode", "promiscMode", "vlan", "sysctl", "sysctlAllowlist",
    "advertise", "logFile", "logLevel", "runtimeDir", "args", "runtimeConfig", "prevResult", "capabilities",
    "cni.dev/valid-attachments", "cni.dev/attachments", "ranges", "routes", "subnet", "gateway", "rangeStart",
    "dataDir", "dst", "gw", "interfaces", "ips", "address", "interface", "version", "mac", "sandbox", "count",
    "intervalMs", "containerID", "ifname", "nameservers", "search", "domain", "options", "table", "priority", "scope",
)

# ---------------------------------------------------------------- values
_env_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
env_text = st.one_of(
    st.text(_env_chars, max_size=40),
    st.sampled_from(EDGE_STRINGS),
    # bytes that are not UTF-8 reach os.environ as surrogate escapes
    st.binary(max_size=24).map(lambda b: b.replace(b"\0", b"").decode("utf-8", "surrogateescape")),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTS),
    st.floats(),
    st.sampled_from(EDGE_STRINGS),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


# ------------------------------------------------------- valid documents
def _ranges(family: str) -> tuple[list, list]:
    ranges, routes = [], []
    if family in ("v4", "dual"):
        ranges.append([{"subnet": SUBNET4, "gateway": "10.199.0.1"}])
        routes.append({"dst": "0.0.0.0/0"})
    if family in ("v6", "dual"):
        ranges.append([{"subnet": SUBNET6, "gateway": "fd00:199::1"}])
        routes.append({"dst": "::/0"})
    return ranges, routes


def prev_result(version: str, family: str, ifname: str = "eth0") -> dict[str, Any]:
    ips = []
    if family in ("v4", "dual"):
        ips.append({"address": "10.199.0.2/24", "gateway": "10.199.0.1", "interface": 1})
    if family in ("v6", "dual"):
        ips.append({"address": "fd00:199::2/64", "gateway": "fd00:199::1", "interface": 1})
    if version < "1.0.0":
        for ip in ips:
            ip["version"] = "6" if ":" in ip["address"] else "4"
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "nsv0123456789ab", "mac": "0a:58:0a:c7:00:01"},
            {"name": ifname, "mac": "0a:58:0a:c7:00:02", "sandbox": "@POD@"},
        ],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.199.0.1"}] if family != "v6" else [{"dst": "::/0"}],
        "dns": {},
    }


def _version_for(command: str) -> st.SearchStrategy[str]:
    # Mostly versions that allow the command (CHECK from 0.4.0, GC and STATUS from 1.1.0), some that do not.
    if command in ("GC", "STATUS"):
        return st.sampled_from([v for v in SUPPORTED if versions.at_least(v, "1.1.0")] * 6 + list(SUPPORTED))
    if command == "CHECK":
        return st.sampled_from([v for v in SUPPORTED if versions.at_least(v, "0.4.0")] * 3 + list(SUPPORTED))
    return st.sampled_from(SUPPORTED)


@st.composite
def valid_config(draw: Any, command: str) -> dict[str, Any]:
    """A config a runtime would send for `command` (every feature nsveth parses, some switched on)."""
    version = draw(_version_for(command))
    family = draw(st.sampled_from(["v4", "v4", "v6", "dual"]))
    ranges, routes = _ranges(family)
    doc: dict[str, Any] = {
        "cniVersion": version,
        "name": draw(st.sampled_from(["fuzznet", "fz.net-1"])),
        "type": "nsveth",
        "runtimeDir": "@RUNTIME@",
        "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": "@IPAMDIR@"},
    }
    feature = draw(st.sets(st.sampled_from(
        ["mtu", "dns", "mac-rc", "mac-args", "sysctl", "advertise", "log", "masq", "bridge", "caps", "cniVersions"]),
        max_size=4))
    if "mtu" in feature:
        doc["mtu"] = draw(st.sampled_from([1280, 1400, 1500, 9000]))
    if "dns" in feature:
        doc["dns"] = {"nameservers": ["10.199.0.53"], "search": ["svc.local"], "options": ["ndots:2"]}
    if "mac-rc" in feature:
        doc["capabilities"] = {"mac": True}
        doc["runtimeConfig"] = {"mac": "0a:58:0a:c7:00:05"}
    if "mac-args" in feature:
        doc["args"] = {"cni": {"mac": "0a:58:0a:c7:00:06"}}
    if "sysctl" in feature:
        doc["sysctl"] = {"net.ipv4.conf.eth0.arp_notify": "1", "net.ipv6.conf.eth0.accept_dad": "0"}
    if "advertise" in feature:
        doc["advertise"] = {"count": draw(st.sampled_from([0, 1])), "intervalMs": 100}
    if "log" in feature:
        doc["logLevel"] = "debug"
        doc["logFile"] = "@SANDBOX@/logs/nsveth.log"
    if "masq" in feature:
        doc["ipMasq"] = True
    if "bridge" in feature:
        doc.update({"mode": "bridge", "bridge": "nsrbr0", "hairpinMode": True})
    if "caps" in feature:
        doc.setdefault("capabilities", {})["portMappings"] = True
    if "cniVersions" in feature:
        doc["cniVersions"] = [version]
    if command in ("CHECK", "DEL") and draw(st.booleans() if command == "DEL" else st.just(True)):
        doc["prevResult"] = prev_result(version, family)
    if command == "GC":
        doc["cni.dev/valid-attachments"] = [
            {"containerID": cid, "ifname": "eth0"} for cid in draw(st.lists(st.sampled_from(["a", "fuzz-ctr", "b1"]), max_size=3))
        ]
    return doc


def valid_env(command: str, container_id: str = "fuzz-ctr", ifname: str = "eth0") -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_PATH": "@CNIPATH@", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if command in ("ADD", "DEL", "CHECK"):
        env.update(CNI_CONTAINERID=container_id, CNI_NETNS="@POD@", CNI_IFNAME=ifname)
    return env


commands = st.sampled_from(["ADD"] * 4 + ["DEL"] * 2 + ["CHECK"] * 2 + ["GC", "STATUS", "VERSION"])


# -------------------------------------------------------------- mutation
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _retyped(value: Any) -> Any:
    """The same content in another JSON type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return {}


@st.composite
def mutate(draw: Any, doc: dict[str, Any], focus: str | None = None) -> tuple[dict[str, Any], str]:
    """Break exactly one thing somewhere in `doc` (under `focus` when given and present)."""
    paths = [p for p in _paths(doc) if p]
    if focus is not None:
        focused = [p for p in paths if p[0] == focus]
        paths = focused or paths
    path = draw(st.sampled_from(paths))
    parent, key = _get(doc, path[:-1]), path[-1]
    op = draw(st.sampled_from(["replace", "edge", "delete", "add-key", "retype", "wrap", "empty"]))
    if op == "replace":
        parent[key] = draw(json_values)
    elif op == "edge":
        parent[key] = draw(st.sampled_from(EDGE_STRINGS) | st.sampled_from(EDGE_INTS))
    elif op == "delete":
        del parent[key]
    elif op == "add-key":
        target = parent[key] if isinstance(parent[key], dict) else parent
        if isinstance(target, dict):
            target[draw(st.sampled_from(KNOWN_KEYS) | st.text(max_size=12))] = draw(json_values)
        else:
            target.append(draw(json_values))
    elif op == "retype":
        parent[key] = _retyped(parent[key])
    elif op == "wrap":
        parent[key] = [parent[key]]
    else:
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else None
    return doc, f"{op} {'.'.join(map(str, path))}"


# -------------------------------------------------------------- cases
@st.composite
def mutated_config(draw: Any, focus: str | None = None) -> Case:
    """Valid env, valid config for the command, then one field of the config broken."""
    command = draw(commands)
    doc = draw(valid_config(command))
    if focus == "prevResult" and "prevResult" not in doc:
        doc["prevResult"] = prev_result(doc["cniVersion"], "v4")
    if focus == "runtimeConfig" and "runtimeConfig" not in doc:
        doc["runtimeConfig"] = {"mac": "0a:58:0a:c7:00:05", "portMappings": [], "ips": ["10.199.0.9/24"]}
    if focus == "args" and "args" not in doc:
        doc["args"] = {"cni": {"mac": "0a:58:0a:c7:00:06", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}}
    doc, what = draw(mutate(doc, focus))
    return Case(valid_env(command), dumps(doc), f"mutated-config {command} {what}")


@st.composite
def valid_case(draw: Any) -> Case:
    """Nothing broken: must succeed (or fail cleanly for the version/command gates)."""
    command = draw(commands)
    return Case(valid_env(command), dumps(draw(valid_config(command))), f"valid {command}")


_netns_values = st.sampled_from(["@POD@", "@HOST@", "@SANDBOX@/nonexistent", "@FIFO@", "@REGULAR@", "@SANDBOX@", "", "relative"])
_path_values = st.sampled_from(["@CNIPATH@", "", "@SANDBOX@/nonexistent", "@CNIPATH@:@SANDBOX@", ":::", "@REGULAR@"])
_args_keys = st.sampled_from(["IgnoreUnknown", "MAC", "IP", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_UID", "FOO", ""])
cni_args = st.one_of(
    env_text,
    st.lists(
        st.tuples(
            _args_keys | st.text(_env_chars, max_size=8),
            st.sampled_from(["=", "", "=="]),
            env_text | st.sampled_from(["1", "true", "0a:58:0a:c7:00:07"]),
        ),
        max_size=5,
    ).map(lambda items: ";".join(k + sep + v for k, sep, v in items)),
)


@st.composite
def mutated_env(draw: Any) -> Case:
    """Valid config, valid env, then one environment variable changed, removed or added."""
    command = draw(commands)
    env = valid_env(command)
    doc = draw(valid_config(command))
    var = draw(st.sampled_from(
        ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_ARGS", "CNI_PATH", "extra"]))
    op = draw(st.sampled_from(["set", "delete"]))
    if var == "extra":
        key = draw(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00="), min_size=1, max_size=20))
        if key != CRASH_ENV:
            env[key] = draw(env_text)
    elif op == "delete":
        env.pop(var, None)
    elif var == "CNI_NETNS":
        env[var] = draw(_netns_values | env_text)
    elif var == "CNI_PATH":
        env[var] = draw(_path_values)
    elif var == "CNI_ARGS":
        env[var] = draw(cni_args)
    elif var == "CNI_COMMAND":
        env[var] = draw(st.sampled_from(COMMANDS) | env_text)
    else:
        env[var] = draw(env_text)
    return Case(env, dumps(doc), f"mutated-env {command} {op} {var}")


@st.composite
def raw_stdin(draw: Any) -> Case:
    """A valid env, anything on stdin."""
    command = draw(commands)
    stdin = draw(st.one_of(
        st.binary(max_size=600),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_values.map(dumps),
        st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, max_size=8).map(dumps),
    ))
    return Case(valid_env(command), stdin, f"raw-stdin {command}")


@st.composite
def raw_env(draw: Any) -> Case:
    """Arbitrary values in every CNI_* variable, a valid config on stdin."""
    command = draw(st.sampled_from(COMMANDS) | env_text)
    env: dict[str, str] = {"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for var, values in (
        ("CNI_CONTAINERID", env_text),
        ("CNI_NETNS", _netns_values | env_text),
        ("CNI_IFNAME", env_text),
        ("CNI_ARGS", cni_args),
        ("CNI_PATH", _path_values),
    ):
        if draw(st.booleans()):
            env[var] = draw(values)
    doc = draw(valid_config(command if command in COMMANDS else "ADD"))
    return Case(env, dumps(doc), f"raw-env {command!r}")


@st.composite
def damaged_bytes(draw: Any) -> Case:
    """A valid config whose serialized bytes are damaged in one way."""
    command = draw(commands)
    doc = draw(valid_config(command))
    data = dumps(doc)
    how = draw(st.sampled_from(["truncate", "splice", "flip", "dupkey", "bom", "deep", "huge", "trailing", "utf16", "nul"]))
    at = draw(st.integers(0, len(data)))
    if how == "truncate":
        data = data[:at]
    elif how == "splice":
        data = data[:at] + draw(st.binary(min_size=1, max_size=12)) + data[at:]
    elif how == "flip":
        i = min(at, len(data) - 1)
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif how == "dupkey":
        key = draw(st.sampled_from(list(doc)))
        data = b"{" + json.dumps(key).encode() + b": " + json.dumps(draw(json_values)).encode() + b", " + data[1:]
    elif how == "bom":
        data = b"\xef\xbb\xbf" + data
    elif how == "deep":
        depth = draw(st.sampled_from([100, 1000, 100000]))
        data = data[:-1] + b', "args": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == "huge":
        data = data[:-1] + b', "runtimeConfig": {"x": "' + b"A" * draw(st.sampled_from([10**5, 4 * 10**6])) + b'"}}'
    elif how == "trailing":
        data = data + draw(st.sampled_from([b"\n", b" {}", b"x", b"\x00", b"\n\n"]))
    elif how == "utf16":
        data = data.decode().encode("utf-16")
    else:
        data = data[:at] + b"\x00" + data[at:]
    return Case(valid_env(command), data, f"damaged-bytes {command} {how}")
