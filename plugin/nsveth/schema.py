"""Validation of a decoded config against the JSON Schema shipped in the package (pure).

A fresh process remembers successful validations on disk (validation_cache);
a warm server (`warm_up`) validates every request with its prebuilt validator.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from .errors import CNIError, Code

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")


def load() -> dict[str, Any]:
    with open(PATH, "rb") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def read() -> bytes:
    """schema.json's bytes (what a validator is built from, and the validation cache keys on)."""
    with open(PATH, "rb") as f:
        return f.read()


_warm: bytes | None = None  # the schema a warm server validated with at start (see `warm_up`)
_validators: dict[bytes, Any] = {}  # by schema bytes


def warm_up() -> None:
    """For `nsveth serve`: build the validator once and run it, so each request only validates.

    From then on the validation cache is skipped (see `warmed`): it exists only
    to spare a fresh process the jsonschema import.
    """
    global _warm
    schema_bytes = read()
    with contextlib.suppress(CNIError):
        validate({"cniVersion": "1.0.0", "name": "warm-up", "type": "nsveth", "ipam": {"type": "host-local"}}, schema_bytes)
    # jsonschema's "pattern" runs re.search(pattern, ...): compiled here into re's cache, each
    # pattern is not compiled again in every forked request whose config has that field.
    import re

    todo: list[Any] = [json.loads(schema_bytes)]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                re.compile(node["pattern"])
            todo += node.values()
        elif isinstance(node, list):
            todo += node
    _warm = schema_bytes


def warmed() -> bytes | None:
    """The schema `warm_up` built its validator for; None in a process that did not warm up."""
    return _warm


def _validator(schema_bytes: bytes | None) -> Any:
    if schema_bytes is None:
        schema_bytes = read()
    validator = _validators.get(schema_bytes)
    if validator is None:
        # jsonschema costs tens of ms to import: only configs that need checking pay it.
        from jsonschema import Draft202012Validator, validators

        # JSON Schema counts 1500.0 as an integer; nsveth hands these fields to
        # netlink, so only JSON integers proper are (as in Go's decoder).
        checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _, v: type(v) is int)
        schema_doc = json.loads(schema_bytes)
        validator = _validators[schema_bytes] = validators.extend(Draft202012Validator, type_checker=checker)(schema_doc)
    return validator


def validate(doc: dict[str, Any], schema_bytes: bytes | None = None) -> None:
    """Raise code 2 for unknown fields, code 7 for any other violation, naming the fields."""
    validator = _validator(schema_bytes)
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    unknown = [e for e in errors if e.validator == "additionalProperties"]
    if unknown:
        found = []
        for e in unknown:
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            found += [(_join(list(e.absolute_path) + [k]), e.instance[k]) for k in extra]
        raise CNIError(
            Code.UNSUPPORTED_FIELD,
            f"unsupported field(s) in network config: {', '.join(n for n, _ in found)}",
            "; ".join(f"{n}={json.dumps(v)}" for n, v in found)[:2000],
        )
    msgs = [f"{_join(list(e.absolute_path)) or '(top level)'}: {_describe(e)}" for e in errors[:5]]
    raise CNIError(Code.INVALID_CONFIG, "invalid network config: " + "; ".join(msgs))


def _join(path: list[Any]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif out and not p.replace("_", "a").replace("-", "a").isalnum():
            out += f"[{json.dumps(p)}]"  # a map key such as a sysctl name: keep it one visible unit
        else:
            out += f".{p}" if out else str(p)
    return out


def _describe(e: Any) -> str:
    # jsonschema's messages quote whole subdocuments; keep them short.
    msg: str = e.message
    return msg if len(msg) <= 300 else msg[:297] + "..."
