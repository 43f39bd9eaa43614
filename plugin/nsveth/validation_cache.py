"""The on-disk validation cache: a config validated once is not validated again by a fresh process.

Importing jsonschema and validating costs tens of milliseconds (bench/README.md)
on every pod operation, for a config that is nearly always the same bytes. So
a successful validation is remembered under the runtime dir and the same
config, checked by the same build against the same schema, is not validated
again. The validation itself is schema.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from typing import Any

from . import safefile, schema

CACHE_DIR = ".validated"  # under the runtime dir
_SLOTS = 256  # at most this many remembered configs per runtime dir (one small file each)


def validate(doc: dict[str, Any], raw: bytes, runtime_dir: object) -> None:
    """`schema.validate`, skipped when this exact config already passed with this build and schema.

    The cache lives in <runtime_dir>/.validated: one file per slot holding the
    sha256 of (build identity, schema bytes, config). Only a directory and a
    file owned by this (root) user and not writable by group or others are
    trusted, so an unprivileged user cannot plant an entry; and an entry only
    states a fact that holds wherever the file is ("these bytes are valid under
    this schema and build"). Only successes are stored: every invalid config is
    validated, and reported, each time. Any problem with the cache means it is
    simply not used.
    """
    warm = schema.warmed()
    if warm is not None:
        schema.validate(doc, warm)  # a warm server: validating costs well under a millisecond
        return
    if not isinstance(runtime_dir, str) or not runtime_dir.startswith("/") or "\0" in runtime_dir:
        schema.validate(doc)  # an unusable runtimeDir: the schema names it
        return
    try:
        schema_bytes = schema.read()
    except OSError:
        schema.validate(doc)
        return
    key = cache_key(doc, raw, schema_bytes)
    if key is None:
        schema.validate(doc)
        return
    directory = os.path.join(runtime_dir, CACHE_DIR)
    if _lookup(directory, key):
        return
    schema.validate(doc, schema_bytes)
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
    for code in (schema.__file__, __file__):
        parts += [code, _stat_id(code)]
    parts += [str(spec and spec.origin), _stat_id(spec.origin if spec else None)]
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
