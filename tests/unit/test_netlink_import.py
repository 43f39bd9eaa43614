"""nsveth.netlink loads pyroute2's rtnetlink message classes without running pyroute2's package __init__.

The technique depends on pyroute2's module layout, which is why requirements.txt
pins the version; these tests fail first when an upgrade breaks it. The import
checks run in a fresh interpreter, since this test process may have imported
pyroute2 for real already.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(ROOT, "plugin")

_PROBE = """
import json, sys
sys.path.insert(0, {plugin!r})
import nsveth.netlink as nl
pkg = sys.modules["pyroute2"]
print(json.dumps({{
    "modules": sorted(sys.modules),
    "pkg_attrs": sorted(vars(pkg)),
    "classes": [nl.ifinfmsg.__module__, nl.ifaddrmsg.__module__, nl.rtmsg.__module__],
}}))
"""


def _probe() -> dict:
    out = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE.format(plugin=PLUGIN)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def test_message_classes_load_without_the_package_init():
    found = _probe()
    assert found["classes"] == [
        "pyroute2.netlink.rtnl.ifinfmsg",
        "pyroute2.netlink.rtnl.ifaddrmsg",
        "pyroute2.netlink.rtnl.rtmsg",
    ]
    # The real pyroute2/__init__.py exports IPRoute, NDB, ... and imports their subsystems.
    assert "IPRoute" not in found["pkg_attrs"] and "NDB" not in found["pkg_attrs"]
    heavy = [
        m
        for m in found["modules"]
        if m.split(".")[0] == "asyncio"
        or m.startswith(("pyroute2.ndb", "pyroute2.iproute", "pyroute2.ipdb", "pyroute2.nftables", "pyroute2.remote"))
        or m in ("sqlite3", "ssl")
    ]
    assert heavy == []


def test_full_package_init_really_is_heavier():
    """Guards the test above: the same probe on a real `import pyroute2` does load those modules."""
    code = "import json, sys, pyroute2; print(json.dumps(sorted(sys.modules)))"
    modules = json.loads(subprocess.run([sys.executable, "-I", "-c", code], check=True, capture_output=True, text=True).stdout)
    assert any(m.startswith("pyroute2.iproute") for m in modules)
    assert any(m.split(".")[0] == "asyncio" for m in modules)


def test_installed_pyroute2_is_the_pinned_version():
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        (pinned,) = re.findall(r"^pyroute2==(\S+)", f.read(), re.M)
    assert metadata.version("pyroute2") == pinned


def _round_trip(cls, fields: dict, attrs: list) -> object:
    msg = cls()
    for k, v in fields.items():
        msg[k] = v
    msg["attrs"] = attrs
    msg["header"]["type"] = 16
    msg["header"]["flags"] = 1
    msg["header"]["sequence_number"] = 7
    msg.encode()
    back = cls(msg.data)
    back.decode()
    assert back["header"]["sequence_number"] == 7 and back["header"]["length"] == len(msg.data)
    for k, v in fields.items():
        assert back[k] == v
    return back


def test_link_message_round_trip():
    from nsveth import netlink

    back = _round_trip(
        netlink.ifinfmsg,
        {"family": socket.AF_UNSPEC, "index": 42, "flags": 1},
        [("IFLA_IFNAME", "nsv0123456789ab"), ("IFLA_MTU", 1400), ("IFLA_ADDRESS", "02:11:22:33:44:55")],
    )
    assert back.get_attr("IFLA_IFNAME") == "nsv0123456789ab"
    assert back.get_attr("IFLA_MTU") == 1400
    assert back.get_attr("IFLA_ADDRESS") == "02:11:22:33:44:55"


def test_veth_linkinfo_round_trip():
    """The nested attributes nsveth sends to create a veth pair survive encode/decode."""
    from nsveth import netlink

    info = {
        "attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": [("IFLA_IFNAME", "eth0")]})]})]
    }
    back = _round_trip(netlink.ifinfmsg, {"family": socket.AF_UNSPEC}, [("IFLA_IFNAME", "nsvhost"), ("IFLA_LINKINFO", info)])
    linkinfo = back.get_attr("IFLA_LINKINFO")
    assert linkinfo.get_attr("IFLA_INFO_KIND") == "veth"
    peer = linkinfo.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth0"


def test_address_and_route_round_trip():
    from nsveth import netlink

    addr = _round_trip(
        netlink.ifaddrmsg,
        {"family": socket.AF_INET6, "prefixlen": 64, "index": 3},
        [("IFA_ADDRESS", "fd00::2"), ("IFA_LOCAL", "fd00::2")],
    )
    assert addr.get_attr("IFA_ADDRESS") == "fd00::2"
    route = _round_trip(
        netlink.rtmsg,
        {"family": socket.AF_INET, "dst_len": 32, "table": 254},
        [("RTA_DST", "10.1.2.3"), ("RTA_OIF", 5), ("RTA_GATEWAY", "10.1.2.1")],
    )
    assert route.get_attr("RTA_DST") == "10.1.2.3" and route.get_attr("RTA_OIF") == 5
    assert route.get_attr("RTA_GATEWAY") == "10.1.2.1"
