"""errors: CNIError and its JSON reply."""

from __future__ import annotations

import json

import pytest
from nsveth import versions
from nsveth.errors import CNIError, Code


@pytest.mark.parametrize(
    "name,value",
    [
        ("INCOMPATIBLE_VERSION", 1),
        ("UNSUPPORTED_FIELD", 2),
        ("UNKNOWN_CONTAINER", 3),
        ("INVALID_ENV", 4),
        ("IO_FAILURE", 5),
        ("DECODE_FAILURE", 6),
        ("INVALID_CONFIG", 7),
        ("TRY_AGAIN", 11),
        ("NOT_AVAILABLE", 50),
        ("LIMITED_CONNECTIVITY", 51),
        ("INTERNAL", 999),
    ],
)
def test_well_known_codes(name, value):
    assert Code[name] == value


def test_own_codes_outside_spec_range():
    own = [c for c in Code if c.name in ("KERNEL", "CHECK_FAILED", "DELEGATE_FAILED")]
    assert len(own) == 3
    assert all(100 <= c < 999 for c in own)
    assert len({int(c) for c in Code}) == len(list(Code))


@pytest.mark.parametrize("version", versions.SUPPORTED)
@pytest.mark.parametrize(
    "code,msg,details",
    [
        (Code.INVALID_ENV, "required env variables [CNI_PATH] missing", ""),
        (Code.INCOMPATIBLE_VERSION, "incompatible CNI versions", 'config is "9.9.9", plugin supports ["1.1.0"]'),
        (Code.KERNEL, 'quotes " and \\ and ünïcödé', "line1\nline2"),
        (7, "plain int code", "d"),
    ],
)
def test_json_shape(version, code, msg, details):
    out = CNIError(code, msg, details).to_json(version)
    assert out.endswith(b"\n")
    body = json.loads(out)
    assert body == {"cniVersion": version, "code": int(code), "msg": msg, "details": details}
    assert type(body["code"]) is int


@pytest.mark.parametrize("details", ["", None])
def test_details_empty_string_when_none_given(details):
    body = json.loads(CNIError(Code.INVALID_CONFIG, "m", details).to_json("1.1.0"))
    assert list(body) == ["cniVersion", "code", "msg", "details"]
    assert body["details"] == ""


def test_one_json_object():
    out = CNIError(Code.INVALID_ENV, "m", "d").to_json("1.1.0")
    text = out.decode()
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == ""
    assert isinstance(obj, dict)


def test_exception_attributes():
    e = CNIError(Code.TRY_AGAIN, "busy", "later")
    assert (e.code, e.msg, e.details) == (11, "busy", "later")
    assert type(e.code) is int
    assert str(e) == "busy"
    assert repr(e) == "CNIError(11, 'busy', 'later')"
    assert isinstance(e, Exception)
