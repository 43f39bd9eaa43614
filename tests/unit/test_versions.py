"""versions: the supported list, ordering, per-command gates, negotiation with delegates."""

from __future__ import annotations

import pytest
from nsveth import versions
from nsveth.errors import CNIError, Code


def test_supported_list():
    assert versions.SUPPORTED == ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert versions.CURRENT == "1.1.0" == versions.SUPPORTED[-1]
    assert list(versions.SUPPORTED) == sorted(versions.SUPPORTED, key=versions.key)


@pytest.mark.parametrize("text,key", [("0.3.0", (0, 3, 0)), ("1.1.0", (1, 1, 0)), ("10.0.2", (10, 0, 2)), ("0.10.0", (0, 10, 0))])
def test_key(text, key):
    assert versions.key(text) == key


@pytest.mark.parametrize("text", ["", "1", "1.0", "1.0.0.0", "1.0.x", "v1.0.0", "1.0.0-rc1", "1..0", " 1.0.0", "1.0.0 ", "-1.0.0"])
def test_key_invalid(text):
    with pytest.raises(ValueError):
        versions.key(text)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ("0.3.0", "0.3.0", True),
        ("0.3.1", "0.3.0", True),
        ("0.3.0", "0.3.1", False),
        ("0.10.0", "0.9.0", True),  # numeric, not string, comparison
        ("0.9.0", "0.10.0", False),
        ("1.0.0", "0.4.0", True),
        ("0.4.0", "1.0.0", False),
        ("1.1.0", "1.1.0", True),
    ],
)
def test_at_least(a, b, expected):
    assert versions.at_least(a, b) is expected


@pytest.mark.parametrize("v", versions.SUPPORTED)
def test_require_supported_ok(v):
    versions.require_supported(v)


@pytest.mark.parametrize("v", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", "", "1.1.0 "])
def test_require_supported_refuses(v):
    with pytest.raises(CNIError) as info:
        versions.require_supported(v)
    err = info.value
    assert err.code == Code.INCOMPATIBLE_VERSION == 1
    assert err.msg == "incompatible CNI versions"
    assert err.details == f'config is "{v}", plugin supports {list(versions.SUPPORTED)}'


GATES = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"])
@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_require_command(command, version):
    minimum = GATES.get(command)
    allowed = minimum is None or versions.at_least(version, minimum)
    if allowed:
        versions.require_command(command, version)
        return
    with pytest.raises(CNIError) as info:
        versions.require_command(command, version)
    assert info.value.code == Code.INCOMPATIBLE_VERSION
    assert info.value.msg == f"config version does not allow {command}"
    assert f'"{version}"' in info.value.details and minimum in info.value.details


@pytest.mark.parametrize(
    "theirs,ceiling,expected",
    [
        (["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"], "1.1.0", "1.1.0"),
        (["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"], "1.1.0", "1.0.0"),
        (["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"], "0.4.0", "0.4.0"),
        (["0.3.1", "1.1.0"], "1.0.0", "0.3.1"),
        (["1.1.0", "0.3.0"], "1.1.0", "1.1.0"),  # order of theirs does not matter
        (["0.1.0", "0.2.0"], "1.1.0", None),
        ([], "1.1.0", None),
        (["1.1.0"], "1.0.0", None),
        (["1.2.0", "2.0.0", "garbage"], "1.1.0", None),
    ],
)
def test_highest_common(theirs, ceiling, expected):
    assert versions.highest_common(theirs, ceiling) == expected


def test_report():
    assert versions.report() == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
