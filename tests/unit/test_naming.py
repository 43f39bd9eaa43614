"""attachment.host_ifname: the deterministic host-side veth name."""

from __future__ import annotations

import itertools
import re

import pytest
from nsveth.attachment import HOST_PREFIX, host_ifname
from nsveth.request import validate_ifname

CASES = [
    ("c1", "eth0"),
    ("c1", "eth1"),
    ("c2", "eth0"),
    ("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "eth0"),
    ("x" * 1000, "ä" * 7),
    ("a", "beth0"),
    ("ab", "eth0"),
    ("c1e", "th0"),  # same concatenation as ("c1", "eth0"): the separator keeps them apart
]


@pytest.mark.parametrize("cid,ifname", CASES)
def test_shape(cid, ifname):
    name = host_ifname(cid, ifname)
    assert HOST_PREFIX == "nsv"
    assert name.startswith("nsv")
    assert len(name.encode()) == 15
    assert re.fullmatch(r"nsv[0-9a-f]{12}", name)
    validate_ifname(name)  # a valid interface name by the same rules as CNI_IFNAME


@pytest.mark.parametrize("cid,ifname", CASES)
def test_deterministic(cid, ifname):
    assert host_ifname(cid, ifname) == host_ifname(str(cid), str(ifname))


def test_known_value():
    # pinned: DEL and GC after an upgrade must still find links made by older versions
    import hashlib

    assert host_ifname("c1", "eth0") == "nsv" + hashlib.sha256(b"c1\0eth0").hexdigest()[:12]


def test_distinct():
    names = [host_ifname(c, i) for c, i in CASES]
    assert len(set(names)) == len(names)


def test_distinct_many():
    cids = [f"{n:064x}" for n in range(300)]
    names = {host_ifname(c, i) for c, i in itertools.product(cids, ["eth0", "net1", "net2"])}
    assert len(names) == 900
