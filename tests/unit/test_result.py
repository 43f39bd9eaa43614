"""result: the one Result model and its wire forms for every supported version."""

from __future__ import annotations

import copy
import ipaddress as ipa
import json

import pytest
from nsveth import result, versions
from nsveth.errors import CNIError, Code
from nsveth.result import DNS, Interface, IPConfig, Result, Route

ALL = list(versions.SUPPORTED)
OLD = [v for v in ALL if not versions.at_least(v, "1.0.0")]  # ips[].version on the wire
PRE_110 = [v for v in ALL if v != "1.1.0"]

BASIC = Result(
    interfaces=(
        Interface("nsv0123456789ab", mac="0a:00:00:00:00:01"),
        Interface("eth0", mac="0a:00:00:00:00:02", sandbox="/run/netns/p"),
    ),
    ips=(
        IPConfig(ipa.ip_interface("10.1.0.5/24"), ipa.ip_address("10.1.0.1"), 1),
        IPConfig(ipa.ip_interface("fd00:1::5/64"), ipa.ip_address("fd00:1::1"), 1),
        IPConfig(ipa.ip_interface("192.168.9.9/32")),
    ),
    routes=(
        Route(ipa.ip_network("0.0.0.0/0")),
        Route(ipa.ip_network("10.2.0.0/16"), ipa.ip_address("10.1.0.1")),
        Route(ipa.ip_network("::/0"), ipa.ip_address("fd00:1::1")),
    ),
    dns=DNS(("10.1.0.1",), "example.org", ("example.org", "b.example.org"), ("ndots:2",)),
)

EXTRAS = Result(
    interfaces=(
        Interface("nsv0123456789ab", mac="0a:00:00:00:00:01", mtu=1450),
        Interface("eth0", mac="0a:00:00:00:00:02", sandbox="/run/netns/p", mtu=1450, socket_path="/run/vhost.sock", pci_id="0000:00:1f.6"),
    ),
    ips=(IPConfig(ipa.ip_interface("10.1.0.5/24"), ipa.ip_address("10.1.0.1"), 1),),
    routes=(
        Route(ipa.ip_network("10.3.0.0/16"), ipa.ip_address("10.1.0.1"), mtu=1400, advmss=1360, priority=100, table=100, scope=0),
        Route(ipa.ip_network("10.1.0.1/32"), scope=253),
    ),
)

EMPTY = Result()


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("version", ALL)
@pytest.mark.parametrize("res", [BASIC, EMPTY], ids=["basic", "empty"])
def test_round_trip(version, res):
    wire = result.to_wire(res, version)
    assert wire["cniVersion"] == version
    # through real JSON text, as it travels
    back = result.from_wire(json.loads(json.dumps(wire)), version, "test")
    assert back == res


@pytest.mark.parametrize("version", ALL)
def test_round_trip_wire_first(version):
    wire = result.to_wire(BASIC, version)
    assert result.to_wire(result.from_wire(copy.deepcopy(wire), version, "test"), version) == wire


def test_round_trip_110_extras():
    wire = result.to_wire(EXTRAS, "1.1.0")
    assert result.from_wire(json.loads(json.dumps(wire)), "1.1.0", "test") == EXTRAS
    assert wire["interfaces"][1] == {
        "name": "eth0",
        "mac": "0a:00:00:00:00:02",
        "sandbox": "/run/netns/p",
        "mtu": 1450,
        "socketPath": "/run/vhost.sock",
        "pciID": "0000:00:1f.6",
    }
    assert wire["routes"][0] == {
        "dst": "10.3.0.0/16",
        "gw": "10.1.0.1",
        "mtu": 1400,
        "advmss": 1360,
        "priority": 100,
        "table": 100,
        "scope": 0,
    }
    assert wire["routes"][1] == {"dst": "10.1.0.1/32", "scope": 253}


# ------------------------------------------------------------- wire shapes
@pytest.mark.parametrize("version", OLD)
def test_old_versions_carry_ip_version(version):
    wire = result.to_wire(BASIC, version)
    assert [ip["version"] for ip in wire["ips"]] == ["4", "6", "4"]


@pytest.mark.parametrize("version", [v for v in ALL if v not in OLD])
def test_modern_versions_have_no_ip_version(version):
    wire = result.to_wire(BASIC, version)
    assert all("version" not in ip for ip in wire["ips"])


@pytest.mark.parametrize("version", ALL)
def test_wire_shape(version):
    wire = result.to_wire(BASIC, version)
    assert wire["interfaces"][0] == {"name": "nsv0123456789ab", "mac": "0a:00:00:00:00:01"}
    assert wire["interfaces"][1]["sandbox"] == "/run/netns/p"
    assert wire["ips"][0]["address"] == "10.1.0.5/24"
    assert wire["ips"][0]["gateway"] == "10.1.0.1"
    assert wire["ips"][0]["interface"] == 1
    assert "interface" not in wire["ips"][2] and "gateway" not in wire["ips"][2]
    assert wire["routes"][0] == {"dst": "0.0.0.0/0"}
    assert wire["routes"][1] == {"dst": "10.2.0.0/16", "gw": "10.1.0.1"}
    assert wire["dns"] == {
        "nameservers": ["10.1.0.1"],
        "domain": "example.org",
        "search": ["example.org", "b.example.org"],
        "options": ["ndots:2"],
    }


@pytest.mark.parametrize("version", ALL)
def test_empty_result_shape(version):
    assert result.to_wire(EMPTY, version) == {"cniVersion": version, "ips": [], "dns": {}}


@pytest.mark.parametrize("version", PRE_110)
def test_110_fields_dropped_below_110(version):
    wire = result.to_wire(EXTRAS, version)
    for iface in wire["interfaces"]:
        assert set(iface) <= {"name", "mac", "sandbox"}
    for route in wire["routes"]:
        assert set(route) <= {"dst", "gw"}
    back = result.from_wire(wire, version, "test")
    assert all(i.mtu is None and not i.socket_path and not i.pci_id for i in back.interfaces)
    assert all(r.mtu is None and r.advmss is None and r.priority is None and r.table is None and r.scope is None for r in back.routes)


def test_downconvert_110_to_040_synthesises_version():
    wire_110 = result.to_wire(BASIC, "1.1.0")
    res = result.from_wire(wire_110, "1.1.0", "ipam")
    wire_040 = result.to_wire(res, "0.4.0")
    assert wire_040["cniVersion"] == "0.4.0"
    assert [ip["version"] for ip in wire_040["ips"]] == ["4", "6", "4"]
    assert [ip["address"] for ip in wire_040["ips"]] == [ip["address"] for ip in wire_110["ips"]]


def test_upconvert_040_to_110_drops_version():
    res = result.from_wire(result.to_wire(BASIC, "0.4.0"), "0.4.0", "ipam")
    assert all("version" not in ip for ip in result.to_wire(res, "1.1.0")["ips"])


# --------------------------------------------------------------- tolerance
@pytest.mark.parametrize("version", ALL)
def test_abbreviated_ipam_result(version):
    # IPAM results have no interfaces and no ips[].interface
    ip = {"address": "10.1.0.5/24", "gateway": "10.1.0.1"}
    if version in OLD:
        ip["version"] = "4"
    res = result.from_wire({"cniVersion": version, "ips": [ip]}, version, "IPAM result")
    assert res.interfaces == () and res.routes == () and res.dns == DNS()
    assert res.ips == (IPConfig(ipa.ip_interface("10.1.0.5/24"), ipa.ip_address("10.1.0.1")),)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"ips": None, "routes": None, "interfaces": None, "dns": None},
        {"ips": [{"address": "10.0.0.1/8", "gateway": ""}]},
        {"interfaces": [{"name": "eth0", "mac": None, "sandbox": None}]},
        {"dns": {"nameservers": None, "domain": None}},
        {"ips": [{"address": "10.0.0.1/8", "version": "4"}]},  # 1.0.0 ignores a stray version
        {"routes": [{"dst": "10.1.2.3/16"}]},  # host bits in dst are tolerated
    ],
)
def test_tolerated_inputs(obj):
    result.from_wire(obj, "1.0.0", "test")


def test_route_dst_normalised():
    res = result.from_wire({"routes": [{"dst": "10.1.2.3/16"}]}, "1.0.0", "test")
    assert str(res.routes[0].dst) == "10.1.0.0/16"


# ----------------------------------------------------------------- invalid
GOOD_IFACES = [{"name": "h"}, {"name": "eth0", "sandbox": "/n"}]


@pytest.mark.parametrize(
    "obj,version,fragment",
    [
        ([], "1.0.0", "not a JSON object"),
        ("x", "1.0.0", "not a JSON object"),
        (None, "1.0.0", "not a JSON object"),
        ({"ips": {"address": "10.0.0.1/24"}}, "1.0.0", "ips must be a list"),
        ({"routes": "x"}, "1.0.0", "routes must be a list"),
        ({"interfaces": {}}, "1.0.0", "interfaces must be a list"),
        ({"ips": [{}]}, "1.0.0", "ips[0].address is required"),
        ({"ips": [{"address": ""}]}, "1.0.0", "ips[0].address is required"),
        ({"ips": [{"address": 167772161}]}, "1.0.0", "ips[0].address is required"),
        ({"ips": ["10.0.0.1/24"]}, "1.0.0", "ips[0] must be an object"),
        ({"ips": [{"address": "10.0.0.1"}]}, "1.0.0", "needs a prefix length"),
        ({"ips": [{"address": "fd00::1"}]}, "1.0.0", "needs a prefix length"),
        ({"ips": [{"address": "10.0.0.1/33"}]}, "1.0.0", "ips[0].address: "),
        ({"ips": [{"address": "10.0.0.300/24"}]}, "1.0.0", "ips[0].address: "),
        ({"ips": [{"address": "10.0.0.1/24"}]}, "0.4.0", 'ips[0].version must be "4" or "6"'),
        ({"ips": [{"address": "10.0.0.1/24", "version": 4}]}, "0.3.1", 'ips[0].version must be "4" or "6"'),
        ({"ips": [{"address": "10.0.0.1/24", "version": "6"}]}, "0.3.0", "does not match"),
        ({"ips": [{"address": "fd00::1/64", "version": "4"}]}, "0.4.0", "does not match"),
        ({"ips": [{"address": "10.0.0.1/24", "gateway": "fd00::1"}]}, "1.0.0", "is not the family of"),
        ({"ips": [{"address": "fd00::1/64", "gateway": "10.0.0.1"}]}, "1.1.0", "is not the family of"),
        ({"ips": [{"address": "10.0.0.1/24", "gateway": "gw"}]}, "1.0.0", "ips[0].gateway: "),
        ({"ips": [{"address": "10.0.0.1/24", "gateway": 1}]}, "1.0.0", "gateway must be a string"),
        ({"ips": [{"address": "10.0.0.1/24", "interface": 0}]}, "1.0.0", "not an index"),
        ({"interfaces": GOOD_IFACES, "ips": [{"address": "10.0.0.1/24", "interface": 2}]}, "1.0.0", "not an index"),
        ({"interfaces": GOOD_IFACES, "ips": [{"address": "10.0.0.1/24", "interface": -1}]}, "1.0.0", "not an index"),
        ({"interfaces": GOOD_IFACES, "ips": [{"address": "10.0.0.1/24", "interface": "1"}]}, "1.0.0", "not an index"),
        ({"interfaces": GOOD_IFACES, "ips": [{"address": "10.0.0.1/24", "interface": True}]}, "1.0.0", "not an index"),
        ({"interfaces": GOOD_IFACES, "ips": [{"address": "10.0.0.1/24", "interface": 1.0}]}, "1.0.0", "not an index"),
        ({"interfaces": [{}]}, "1.0.0", "interfaces[0] needs a name"),
        ({"interfaces": [{"name": ""}]}, "1.0.0", "interfaces[0] needs a name"),
        ({"interfaces": ["eth0"]}, "1.0.0", "interfaces[0] needs a name"),
        ({"interfaces": [{"name": "eth0", "mac": 5}]}, "1.0.0", "interfaces[0].mac must be a string"),
        ({"interfaces": [{"name": "eth0", "mtu": -1}]}, "1.1.0", "interfaces[0].mtu"),
        ({"interfaces": [{"name": "eth0", "mtu": "1500"}]}, "1.1.0", "interfaces[0].mtu"),
        ({"routes": [{}]}, "1.0.0", "routes[0].dst is required"),
        ({"routes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}]}, "1.0.0", "is not the family of"),
        ({"routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}, "1.0.0", "is not the family of"),
        ({"routes": [{"dst": "10.0.0.0/33"}]}, "1.0.0", "routes[0].dst: "),
        ({"routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.0.0.0/8", "gw": "10.0.0.x"}]}, "1.0.0", "routes[1].gw: "),
        ({"routes": [{"dst": "10.0.0.0/8", "table": "main"}]}, "1.1.0", "routes[0].table"),
        ({"routes": [{"dst": "10.0.0.0/8", "mtu": -5}]}, "1.1.0", "routes[0].mtu"),
        ({"routes": [{"dst": "10.0.0.0/8", "scope": True}]}, "1.1.0", "routes[0].scope"),
        ({"routes": ["10.0.0.0/8"]}, "1.0.0", "routes[0] must be an object"),
        ({"dns": []}, "1.0.0", "dns must be an object"),
        ({"dns": ""}, "1.0.0", "dns must be an object"),
        ({"dns": {"nameservers": "10.0.0.1"}}, "1.0.0", "dns.nameservers"),
        ({"dns": {"search": [1]}}, "1.0.0", "dns.search"),
        ({"dns": {"domain": ["a"]}}, "1.0.0", "dns.domain"),
        ({}, "0.2.0", "not supported"),
    ],
)
@pytest.mark.parametrize("origin", ["prevResult", "IPAM host-local result"])
def test_invalid(obj, version, fragment, origin):
    with pytest.raises(CNIError) as info:
        result.from_wire(obj, version, origin)
    err = info.value
    assert err.code == Code.INVALID_CONFIG
    assert err.msg.startswith(f"invalid {origin}: ")
    assert fragment in err.msg


def test_invalid_code_chosen_by_caller():
    with pytest.raises(CNIError) as info:
        result.from_wire({"ips": [{}]}, "1.0.0", "IPAM result", code=Code.DELEGATE_FAILED)
    assert info.value.code == Code.DELEGATE_FAILED


def test_dns_is_empty():
    assert DNS().is_empty()
    for d in (DNS(nameservers=("x",)), DNS(domain="x"), DNS(search=("x",)), DNS(options=("x",))):
        assert not d.is_empty()
