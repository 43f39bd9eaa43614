"""The committed cri_api_pb2.py is generated from cri_api.proto as it is now.

Regenerating needs protoc (grpcio-tools), which the tests do not install; this
check needs neither: it reads every message's fields, every enum's values and
the service's methods from the .proto text and compares them with the
descriptors in the generated module, so an edit of one without the other fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import cri_api_pb2 as api

PROTO = Path(__file__).with_name("cri_api.proto")
_BLOCK = re.compile(r"^(message|enum|service) (\w+) \{(?:\}|(.*?)^\})", re.M | re.S)
_FIELD = re.compile(r"^\s*(repeated )?(map<\w+, \w+>|[\w.]+) (\w+) = (\d+);", re.M)
_VALUE = re.compile(r"^\s*(\w+) = (\d+);", re.M)
_RPC = re.compile(r"rpc (\w+)\((\w+)\) returns \((\w+)\)")


def _text() -> str:
    return re.sub(r"//[^\n]*", "", PROTO.read_text())


def test_messages_enums_and_service_match_the_proto() -> None:
    blocks = _BLOCK.findall(_text())
    assert blocks
    messages = {n for k, n, _ in blocks if k == "message"}
    assert messages == set(api.DESCRIPTOR.message_types_by_name)
    for kind, name, body in blocks:
        if kind == "message":
            want = {f[2]: (int(f[3]), bool(f[0]) or f[1].startswith("map<")) for f in _FIELD.findall(body)}
            fields = api.DESCRIPTOR.message_types_by_name[name].fields
            have = {f.name: (f.number, f.is_repeated) for f in fields}
            assert have == want, name
        elif kind == "enum":
            values = api.DESCRIPTOR.enum_types_by_name[name].values
            assert {v.name: v.number for v in values} == {n: int(v) for n, v in _VALUE.findall(body)}, name
        else:
            service = api.DESCRIPTOR.services_by_name[name]
            have_rpcs = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
            assert have_rpcs == {n: (i, o) for n, i, o in _RPC.findall(body)}
    assert api.DESCRIPTOR.package == "runtime.v1"  # the service path containerd serves
