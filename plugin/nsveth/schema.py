"""Validation of a decoded config against the JSON Schema shipped in the package."""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import CNIError, Code

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")


def load() -> dict[str, Any]:
    with open(PATH, "rb") as f:
        return json.load(f)


def validate(doc: dict[str, Any]) -> None:
    """Raise code 2 for unknown fields, code 7 for any other violation, naming the fields."""
    # jsonschema costs tens of ms to import: only configs that need checking pay it.
    from jsonschema import Draft202012Validator, validators

    # JSON Schema counts 1500.0 as an integer; nsveth hands these fields to
    # netlink, so only JSON integers proper are (as in Go's decoder).
    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _, v: type(v) is int)
    validator = validators.extend(Draft202012Validator, type_checker=checker)(load())
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
    msg = e.message
    return msg if len(msg) <= 300 else msg[:297] + "..."

