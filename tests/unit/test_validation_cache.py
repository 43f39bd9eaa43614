"""The validation cache: a config is validated again unless this exact config already passed,
and an entry is trusted only in a directory and file owned by this user and writable by no one else."""

from __future__ import annotations

import json
import os

import pytest
import support
from nsveth import config, schema, validation_cache
from nsveth.errors import CNIError, Code


@pytest.fixture
def runtime_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    return str(d)


@pytest.fixture
def calls(monkeypatch):
    """Counts real validations (the jsonschema path), which still run."""
    seen = []
    real = schema.validate

    def counting(doc, schema_bytes=None):
        seen.append(doc)
        return real(doc, schema_bytes)

    monkeypatch.setattr(schema, "validate", counting)
    return seen


def conf(runtime_dir: str, **extra) -> dict:
    doc = {
        "cniVersion": "1.0.0",
        "name": "cachenet",
        "type": "nsveth",
        "runtimeDir": runtime_dir,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]},
    }
    doc.update(extra)
    return doc


def check(doc: dict, raw: bytes | None = None) -> None:
    raw = raw if raw is not None else json.dumps(doc).encode()
    validation_cache.validate(config.decode(raw), raw, doc.get("runtimeDir"))


def cache_dir(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, validation_cache.CACHE_DIR)


def entries(runtime_dir: str) -> list[str]:
    d = cache_dir(runtime_dir)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_same_bytes_validated_once(runtime_dir, calls):
    doc = conf(runtime_dir)
    check(doc)
    check(doc)
    check(doc)
    assert len(calls) == 1
    assert len(entries(runtime_dir)) == 1
    st = os.stat(cache_dir(runtime_dir))
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700


def test_different_bytes_are_validated(runtime_dir, calls):
    doc = conf(runtime_dir)
    check(doc)
    check(doc, json.dumps(doc, indent=1).encode())  # same meaning, other bytes
    check(conf(runtime_dir, mtu=1400))
    check(conf(runtime_dir, runtimeConfig={"mac": "02:00:00:00:00:01"}))
    assert len(calls) == 4


def test_invalid_config_is_never_remembered(runtime_dir, calls):
    bad = conf(runtime_dir, mtu=10)
    for _ in range(2):
        with pytest.raises(CNIError) as e:
            check(bad)
        assert e.value.code == Code.INVALID_CONFIG
    assert len(calls) == 2 and entries(runtime_dir) == []


def test_unknown_field_after_a_valid_one_is_still_refused(runtime_dir, calls):
    check(conf(runtime_dir))
    with pytest.raises(CNIError) as e:
        check(conf(runtime_dir, bogus=1))
    assert e.value.code == Code.UNSUPPORTED_FIELD


def validated_again_after(spoil, runtime_dir, calls) -> None:
    """A config validated (and remembered), then `spoil()` done to the cache: the same config is validated again."""
    doc = conf(runtime_dir)
    check(doc)
    spoil()
    check(doc)
    assert len(calls) == 2


def only_entry(runtime_dir) -> str:
    (entry,) = entries(runtime_dir)
    return os.path.join(cache_dir(runtime_dir), entry)


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o750, 0o705, 0o702])
def test_group_or_world_accessible_cache_dir_is_ignored(runtime_dir, calls, mode):
    validated_again_after(lambda: os.chmod(cache_dir(runtime_dir), mode), runtime_dir, calls)


def test_writable_entry_is_ignored(runtime_dir, calls):
    validated_again_after(lambda: os.chmod(only_entry(runtime_dir), 0o666), runtime_dir, calls)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")
def test_cache_dir_or_entry_of_another_user_is_ignored(runtime_dir, calls):
    doc = conf(runtime_dir)
    check(doc)
    (entry,) = entries(runtime_dir)
    path = os.path.join(cache_dir(runtime_dir), entry)
    os.chown(path, 65534, 65534)
    check(doc)
    assert len(calls) == 2  # revalidated; the entry is replaced by one of ours
    assert os.stat(path).st_uid == os.geteuid()
    os.chown(cache_dir(runtime_dir), 65534, 65534)
    check(doc)
    check(doc)
    assert len(calls) == 4  # a foreign dir is neither trusted nor written to


def test_planted_entry_in_a_foreign_dir_is_not_trusted(tmp_path, calls):
    """An attacker's runtime dir with a correct-looking entry: the key is easy to compute, but the
    dir must be ours and private. (As non-root the 'attacker' is simulated with a lax mode.)"""
    rd = tmp_path / "evil"
    rd.mkdir(mode=0o777)
    os.chmod(rd, 0o777)
    doc = conf(str(rd))
    raw = json.dumps(doc).encode()
    with open(schema.PATH, "rb") as f:
        key = validation_cache.cache_key(config.decode(raw), raw, f.read())
    assert key is not None
    d = rd / validation_cache.CACHE_DIR
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o777)
    (d / validation_cache._slot(key)).write_text(key)
    for _ in range(2):
        validation_cache.validate(config.decode(raw), raw, str(rd))
    assert len(calls) == 2


def test_symlinked_cache_dir_is_ignored(runtime_dir, tmp_path, calls):
    def moved_away() -> None:
        real = tmp_path / "elsewhere"
        os.rename(cache_dir(runtime_dir), real)
        os.symlink(real, cache_dir(runtime_dir))

    validated_again_after(moved_away, runtime_dir, calls)


def test_entry_with_other_key_is_a_miss(runtime_dir, calls):
    def other_key() -> None:
        with open(only_entry(runtime_dir), "w") as f:
            f.write("0" * 64)

    validated_again_after(other_key, runtime_dir, calls)


def test_other_schema_or_build_is_a_miss(runtime_dir, calls, monkeypatch, tmp_path):
    doc = conf(runtime_dir)
    check(doc)
    with open(schema.PATH, "rb") as f:
        text = f.read()
    changed = tmp_path / "schema.json"
    changed.write_bytes(text.replace(b'"title"', b'"$comment": "x", "title"', 1))
    monkeypatch.setattr(schema, "PATH", str(changed))
    check(doc)
    assert len(calls) == 2
    monkeypatch.setattr(validation_cache, "_build_identity", lambda: b"another build")
    check(doc)
    assert len(calls) == 3


def test_no_runtime_dir_yet_means_no_cache_and_nothing_created(tmp_path, calls):
    missing = str(tmp_path / "not-yet")
    doc = conf(missing)
    check(doc)
    check(doc)
    assert len(calls) == 2 and not os.path.exists(missing)


def test_relative_or_odd_runtime_dir_skips_the_cache(calls):
    for rd in ("relative/dir", 5, None):
        doc = conf("/unused")
        raw = json.dumps(doc).encode()
        validation_cache.validate(config.decode(raw), raw, rd)
    assert len(calls) == 3


PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "ips": [{"address": "10.1.0.2/24", "interface": 0}]}


def test_prev_result_does_not_defeat_the_cache(runtime_dir, calls):
    """DEL carries each pod's own prevResult; the rest of the config is what is remembered."""
    check(conf(runtime_dir, prevResult=PREV))
    other = dict(PREV, ips=[{"address": "10.1.0.3/24", "interface": 0}])
    check(conf(runtime_dir, prevResult=other))
    check(conf(runtime_dir, prevResult={}))
    assert len(calls) == 1
    check(conf(runtime_dir, prevResult=PREV, mtu=1400))  # the rest differs
    assert len(calls) == 2


def test_prev_result_must_still_be_an_object(runtime_dir, calls):
    check(conf(runtime_dir, prevResult=PREV))
    with pytest.raises(CNIError) as e:
        check(conf(runtime_dir, prevResult=[1]))
    assert e.value.code == Code.INVALID_CONFIG


def test_prev_result_shortcut_only_when_the_schema_allows_it(runtime_dir, calls, monkeypatch, tmp_path):
    """A schema that constrains prevResult (named twice) gets every such config validated."""
    with open(schema.PATH, "rb") as f:
        doc = json.loads(f.read())
    doc["properties"]["prevResult"] = {"type": "object", "required": ["cniVersion"]}
    stricter = tmp_path / "schema.json"
    stricter.write_text(json.dumps(doc))
    monkeypatch.setattr(schema, "PATH", str(stricter))
    check(conf(runtime_dir, prevResult=PREV))
    with pytest.raises(CNIError):
        check(conf(runtime_dir, prevResult={"ips": []}))
    assert len(calls) == 2
    # and an extra top-level keyword that may look at any property also turns it off
    doc["properties"]["prevResult"] = {"type": "object"}
    doc["patternProperties"] = {"^prev": {"required": ["cniVersion"]}}
    stricter.write_text(json.dumps(doc))
    check(conf(runtime_dir, prevResult=PREV))
    check(conf(runtime_dir, prevResult=dict(PREV, ips=[])))
    assert len(calls) == 4


def test_the_plugin_path_uses_the_cache_and_config_load_alone_does_not(runtime_dir, calls):
    """dispatch.run (what the executable and a served request run) validates a config once;
    config.load on its own, as the pure core, remembers nothing."""
    from nsveth import dispatch
    from nsveth.request import parse

    env = support.cni_env("ADD", container_id="c1", netns="/nonexistent/netns")
    raw = json.dumps(conf(runtime_dir)).encode()
    for _ in range(3):
        out, status = dispatch.run(env, lambda: raw)
        assert (status, json.loads(out)["code"]) == (1, Code.UNKNOWN_CONTAINER)  # past the config, before any change
    assert len(calls) == 1
    for _ in range(2):
        config.load(raw, parse(env))
    assert len(calls) == 3


def test_build_id_file_is_the_identity_when_present(runtime_dir, calls, monkeypatch, tmp_path):
    """A built executable carries build_id (unique per build): a rebuild misses every entry."""
    build_id = tmp_path / "build_id"
    build_id.write_text("2026-01-01T00:00:00Z aaaa\n")
    monkeypatch.setattr(validation_cache, "BUILD_ID", str(build_id))
    doc = conf(runtime_dir)
    check(doc)
    check(doc)
    assert len(calls) == 1
    build_id.write_text("2026-01-01T00:00:00Z bbbb\n")
    check(doc)
    assert len(calls) == 2


def test_a_warm_server_validates_every_time_and_leaves_the_disk_alone(runtime_dir, calls, monkeypatch):
    """After schema.warm_up (nsveth serve), the prebuilt validator runs on every config: nothing is read or written."""
    monkeypatch.setattr(schema, "_warm", None)  # warm_up's state, put back after the test
    schema.warm_up()
    doc = conf(runtime_dir)
    check(doc)
    check(doc)
    assert len(calls) == 3  # warm_up's own validation, then each config
    assert entries(runtime_dir) == []
    with pytest.raises(CNIError) as e:
        check(conf(runtime_dir, mtu="x"))
    assert e.value.code == Code.INVALID_CONFIG
