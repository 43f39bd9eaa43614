"""A real PyInstaller one-dir bundle runs through the installed relative symlink.

This is the layout's premise: the kubelet execs <bindir>/nsveth, a symlink into
nsveth.d/<hash>/, and the bootloader must find `_internal/` beside the real
executable. Uses dist/nsveth/ when ./build.sh has run, otherwise builds a tiny
bundle with the venv's PyInstaller (a few seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import REPO, Node

HELLO = 'import json, sys; print(json.dumps({"frozen": getattr(sys, "frozen", False), "argv": sys.argv[1:]}))\n'


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pyi")
    (d / "hello.py").write_text(HELLO)
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--onedir", "--name", "nsveth", "--noconfirm", "--log-level", "WARN",
         "--distpath", d / "dist", "--workpath", d / "work", "--specpath", d, d / "hello.py"],
        check=True, capture_output=True, timeout=300)
    return d / "dist" / "nsveth"


def test_tiny_pyinstaller_bundle_runs_via_installed_symlink(node: Node, tiny_bundle: Path) -> None:
    node.bundles["pyi"] = tiny_bundle
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="pyi") == 0
    # Run from elsewhere, with a minimal env, as a kubelet would.
    out = subprocess.run([str(node.bin_dir / "nsveth"), "x"], capture_output=True, text=True, check=True,
                         cwd="/", env={"PATH": "/usr/bin:/bin"}, timeout=60).stdout
    assert json.loads(out) == {"frozen": True, "argv": ["x"]}


@pytest.mark.skipif(not (REPO / "dist" / "nsveth" / "nsveth").exists(), reason="run ./build.sh first")
def test_built_nsveth_answers_version_via_installed_symlink(node: Node) -> None:
    node.bundles["dist"] = REPO / "dist" / "nsveth"
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="dist") == 0
    proc = subprocess.run([str(node.bin_dir / "nsveth")], input="", capture_output=True, text=True, cwd="/",
                          env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "supportedVersions" in json.loads(proc.stdout)
    assert os.readlink(node.bin_dir / "nsveth").startswith("nsveth.d/")
