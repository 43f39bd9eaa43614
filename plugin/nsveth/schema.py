"""Validation of a decoded config against the JSON Schema shipped in the package.

Importing jsonschema and validating costs about 50 ms, on every pod operation,
for a config that is nearly always the same bytes. So a successful validation
is remembered (see `validate_cached`) and the same config, checked by the same
build against the same schema, is not validated again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
from typing import Any

from . import safefile
from .errors import CNIError, Code

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")
CACHE_DIR = ".validated"  # under the runtime dir
_SLOTS = 256  # at most this many remembered configs per runtime dir (one small file each)


def load() -> dict[str, Any]:
    with open(PATH, "rb") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def validate_cached(doc: dict[str, Any], raw: bytes, runtime_dir: object) -> None:
    """`validate`, skipped when this exact config already passed with this build and schema.

    The cache lives in <runtime_dir>/.validated: one file per slot holding the
    sha256 of (build identity, schema bytes, config). Only a directory and a
    file owned by this (root) user and not writable by group or others are
    trusted, so an unprivileged user cannot plant an entry; and an entry only
    states a fact that holds wherever the file is ("these bytes are valid under
    this schema and build"). Only successes are stored: every invalid config is
    validated, and reported, each time. Any problem with the cache means it is
    simply not used.
    """
    if _warm is not None:
        validate(doc, _warm)  # a warm server: validating costs well under a millisecond
        return
    if not isinstance(runtime_dir, str) or not runtime_dir.startswith("/") or "\0" in runtime_dir:
        validate(doc)  # an unusable runtimeDir: the schema names it
        return
    try:
        with open(PATH, "rb") as f:
            schema_bytes = f.read()
    except OSError:
        validate(doc)
        return
    key = cache_key(doc, raw, schema_bytes)
    if key is None:
        validate(doc)
        return
    directory = os.path.join(runtime_dir, CACHE_DIR)
    if _lookup(directory, key):
        return
    validate(doc, schema_bytes)
    _store(runtime_dir, directory, key)


def cache_key(doc: dict[str, Any], raw: bytes, schema_bytes: bytes) -> str | None:
    """sha256 of build identity, schema bytes and the config (see `_subject`); None: do not cache."""
    subject = _subject(doc, raw, schema_bytes)
    if subject is None:
        return None
    return hashlib.sha256(b"nsveth-validated\0" + _build_identity() + b"\0" + schema_bytes + b"\0" + subject).hexdigest()


def _subject(doc: dict[str, Any], raw: bytes, schema_bytes: bytes) -> bytes | None:
    """The bytes the cache key covers: the config's own bytes, except for prevResult.

    DEL and CHECK carry the pod's own prevResult, so keyed on exact bytes every
    DEL would miss. The schema allows any object there, and (checked here on the
    schema itself) nothing else in it can look at prevResult: its properties are
    checked one by one, top-level keywords are plain ones, and "prevResult" is
    named once. Then the config is valid exactly when it is valid with an empty
    prevResult and its prevResult is an object; the key covers the rest of the
    config in canonical JSON (decoding already refused duplicate keys, so this
    is one-to-one with the decoded document the validator sees).
    """
    if "prevResult" not in doc:
        return b"raw\0" + raw
    prev = doc["prevResult"]
    if not isinstance(prev, dict) or schema_bytes.count(b'"prevResult"') != 1:
        return None
    try:
        schema_doc = json.loads(schema_bytes)
        opaque = {k: v for k, v in schema_doc["properties"]["prevResult"].items() if k != "description"}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if opaque != {"type": "object"} or not set(schema_doc) <= _PLAIN_TOP_LEVEL:
        return None
    rest = dict(doc, prevResult={})
    return b"canonical\0" + json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()


# Keywords whose outcome is decided property by property (or not at all).
_PLAIN_TOP_LEVEL = {"$schema", "$id", "title", "description", "type", "required", "additionalProperties", "$defs", "properties"}


BUILD_ID = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_id")


def _build_identity() -> bytes:
    """What the validation outcome depends on besides schema and config: this build's code.

    A built executable carries a build_id file that build.sh makes unique per
    build, so any rebuild (new jsonschema, new validation code), however it
    is installed, invalidates every entry. Run from source, the interpreter,
    this file and jsonschema's package (path and stat) stand in for it.
    """
    from . import __version__

    try:
        with open(BUILD_ID, "rb") as f:
            return b"build\0" + __version__.encode() + b"\0" + f.read(256)
    except OSError:
        pass
    parts = [__version__, sys.version, sys.executable, _stat_id(sys.executable)]
    import importlib.util

    spec = importlib.util.find_spec("jsonschema")
    parts += [__file__, _stat_id(__file__), str(spec and spec.origin), _stat_id(spec.origin if spec else None)]
    return "\0".join(parts).encode()


def _stat_id(path: str | None) -> str:
    if path is None:
        return "-"
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _trusted(st: os.stat_result, kind: int) -> bool:
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _slot(key: str) -> str:
    return f"{int(key[:8], 16) % _SLOTS:02x}"


def _lookup(directory: str, key: str) -> bool:
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        dfd = os.open(directory, flags | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        st = os.fstat(dfd)
        if not _trusted(st, stat.S_IFDIR) or st.st_mode & 0o077:
            return False
        return safefile.read_trusted(_slot(key), 128, dir_fd=dfd) == key.encode()
    except (OSError, safefile.Unsafe):
        return False
    finally:
        os.close(dfd)


def _store(runtime_dir: str, directory: str, key: str) -> None:
    try:
        # Only inside a runtime dir the commands already made and own: a config
        # check alone (unit tests, STATUS on a fresh host) never creates one.
        if not _trusted(os.lstat(runtime_dir), stat.S_IFDIR):
            return
        safefile.private_dir(directory)
        dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_DIRECTORY)
    except (OSError, safefile.Unsafe):
        return
    try:
        st = os.fstat(dfd)
        if not _trusted(st, stat.S_IFDIR) or st.st_mode & 0o077:
            return
        safefile.write_atomic(dfd, _slot(key), key.encode())
    except OSError:
        pass  # not remembered: the next run validates again
    finally:
        os.close(dfd)


_warm: bytes | None = None  # the schema a warm server validated with at start (see `warm_up`)
_validators: dict[bytes, Any] = {}  # by schema bytes


def warm_up() -> None:
    """For `nsveth serve`: build the validator once and run it, so each request only validates.

    From then on `validate_cached` skips the on-disk cache: it exists only to
    spare a fresh process the jsonschema import.
    """
    global _warm
    with open(PATH, "rb") as f:
        schema_bytes = f.read()
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


def _validator(schema_bytes: bytes | None) -> Any:
    if schema_bytes is None:
        with open(PATH, "rb") as f:
            schema_bytes = f.read()
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

