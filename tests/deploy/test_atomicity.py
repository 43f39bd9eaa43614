"""Readers running concurrently with installs never see partial or missing state.

The readers are separate processes doing what a kubelet/containerd does: read
the conflist, exec `<bindir>/nsveth` (which loads `_internal/` files beside its
real path, like a PyInstaller bundle), and look at version directories.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

from deploy_support import Node, make_bundle

READER = textwrap.dedent(r'''
    import json, os, subprocess, sys
    bin_dir, conflist, stop, mode = sys.argv[1:5]
    count, errors = 0, []
    while not os.path.exists(stop):
        count += 1
        if mode == "exec":
            try:
                mtu = json.loads(open(conflist).read())["plugins"][0]["mtu"]
                if mtu not in (1500, 9000):
                    errors.append(f"conflist mtu {mtu}")
            except Exception as e:
                errors.append(f"conflist: {e!r}")
            try:
                r = subprocess.run([bin_dir + "/nsveth"], capture_output=True, text=True)
            except OSError as e:  # ENOENT: the symlink was missing at exec time
                errors.append(f"exec: {e!r}")
                continue
            if r.returncode != 0 or r.stdout not in ("A", "B"):
                errors.append(f"exec rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
        else:  # "dirs": every version dir visible under its final name is complete
            versions = os.path.join(bin_dir, "nsveth.d")
            for name in os.listdir(versions):
                d = os.path.join(versions, name)
                if name.startswith(".") or not os.path.isdir(d):
                    continue
                try:
                    size = os.path.getsize(os.path.join(d, "_internal", "blob"))
                    ok = size == int(open(os.path.join(d, "_internal", "size")).read()) and \
                        os.access(os.path.join(d, "nsveth"), os.X_OK)
                except FileNotFoundError:
                    ok = False
                # Pruning renames a whole dir away, so a failed look at a dir
                # that is gone now is a prune, not a partial copy.
                if not ok and os.path.exists(d):
                    errors.append(f"incomplete version dir {name}")
    print(json.dumps({"count": count, "errors": errors[:10], "nerrors": len(errors)}))
''')


def start_reader(node: Node, mode: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", READER, str(node.bin_dir), str(node.conflist), str(node.root / "stop"), mode],
        stdout=subprocess.PIPE, text=True)


def finish(readers: list[subprocess.Popen], node: Node) -> list[dict]:
    (node.root / "stop").touch()
    return [json.loads(r.communicate(timeout=60)[0]) for r in readers]


def test_readers_never_see_partial_conflist_or_missing_binary(node: Node) -> None:
    templates = [node.template.read_text(), node.template.read_text().replace('"mtu": 1500', '"mtu": 9000')]
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="A") == 0
    readers = [start_reader(node, "exec"), start_reader(node, "exec")]
    rounds = 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            node.template.write_text(templates[rounds % 2])
            # Alternating A/B switches the symlink every round; both versions
            # stay installed (current + previous), as on a real upgrade.
            assert node.run("--pod-cidr", "10.244.3.0/24", bundle="AB"[rounds % 2]) == 0
            rounds += 1
    finally:
        results = finish(readers, node)
    assert rounds > 10
    for result in results:
        assert result["count"] > 20, result  # the readers really ran alongside
        assert result["nerrors"] == 0, result["errors"]


def test_version_dirs_are_complete_whenever_visible(node: Node) -> None:
    blob_size = 4 << 20  # big enough that a copy takes a while
    for i in range(6):
        bundle = make_bundle(node.root / "big" / str(i), "AB"[i % 2])
        (bundle / "_internal" / "blob").write_bytes(bytes([i]) * blob_size)
        (bundle / "_internal" / "size").write_text(str(blob_size))
        node.bundles[f"big{i}"] = bundle
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="big0") == 0
    readers = [start_reader(node, "dirs"), start_reader(node, "exec")]
    try:
        # Every install is a new version: copied, switched, and the one before
        # the previous pruned, all while the readers look.
        for i in range(1, 6):
            assert node.run("--pod-cidr", "10.244.3.0/24", bundle=f"big{i}") == 0
    finally:
        results = finish(readers, node)
    for result in results:
        assert result["count"] > 5, result
        assert result["nerrors"] == 0, result["errors"]
