"""scripts/install.sh: the README's install on a plain host (no Kubernetes), into temp dirs.

The same installer and layout as the DaemonSet: install (creating the bin dir),
upgrade, rollback, status and uninstall, and a DaemonSet run on a node that was
installed by hand (and the other way round) takes it over instead of refusing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import support
from deploy_support import REPO, make_bundle, make_node

SCRIPT = REPO / "scripts" / "install.sh"
SHIPPED_ALLOWLIST = Path(support.SHIPPED_ALLOWLIST)


class Host:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin_dir = root / "opt" / "cni" / "bin"  # not there yet, as on a fresh Debian 12
        self.allowlist = root / "etc" / "cni" / "nsveth" / "allowlist.conf"
        self.bundles: dict[str, Path] = {}

    def bundle(self, version: str) -> Path:
        if version not in self.bundles:
            self.bundles[version] = make_bundle(self.root / "bundles" / version, version)
        return self.bundles[version]

    def run(self, action: str, *extra: str, bundle: str | None = "A") -> subprocess.CompletedProcess[str]:
        args = [str(SCRIPT), action, "--cni-bin-dir", str(self.bin_dir), "--allowlist-dest", str(self.allowlist)]
        if bundle:
            args += ["--bundle", str(self.bundle(bundle))]
        return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=60)

    def ok(self, action: str, *extra: str, bundle: str | None = "A") -> subprocess.CompletedProcess[str]:
        proc = self.run(action, *extra, bundle=bundle)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        return proc

    def status(self) -> dict:
        return json.loads(self.run("status").stdout)

    def exec_nsveth(self) -> str:
        return subprocess.run([str(self.bin_dir / "nsveth")], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_install_creates_the_bin_dir_and_installs_plugin_and_allowlist(host: Host) -> None:
    assert not host.bin_dir.exists()
    assert host.run("status").returncode == 1
    assert host.status()["installed"] is False

    host.ok("install")
    assert host.exec_nsveth() == "A"
    assert os.readlink(host.bin_dir / "nsveth").startswith("nsveth.d/")
    assert host.allowlist.read_bytes() == SHIPPED_ALLOWLIST.read_bytes()
    st = host.status()
    assert st["installed"] and st["intact"] and st["previous"] is None
    assert st["files"] == {"allowlist": str(host.allowlist)}
    host.ok("install")  # again: nothing to do
    assert host.exec_nsveth() == "A"


def test_upgrade_rollback_and_forward_again(host: Host) -> None:
    host.ok("install", bundle="A")
    a = host.status()["current"]
    host.ok("install", bundle="B")
    assert host.exec_nsveth() == "B"
    b = host.status()["current"]
    assert host.status()["previous"] == a != b

    host.ok("rollback", bundle=None)
    assert host.exec_nsveth() == "A"
    assert (host.status()["current"], host.status()["previous"]) == (a, b)
    host.ok("rollback", bundle=None)
    assert host.exec_nsveth() == "B"


def test_rollback_refuses_without_an_intact_previous_version(host: Host) -> None:
    host.ok("install", bundle="A")
    proc = host.run("rollback", bundle=None)
    assert proc.returncode == 1 and "no previous version" in proc.stderr
    host.ok("install", bundle="B")
    previous = host.bin_dir / "nsveth.d" / host.status()["previous"]
    (previous / "_internal" / "version").write_text("damaged")
    proc = host.run("rollback", bundle=None)
    assert proc.returncode == 1 and "damaged" in proc.stderr
    assert host.exec_nsveth() == "B"


def test_uninstall_removes_what_install_put_there(host: Host) -> None:
    host.bin_dir.mkdir(parents=True)
    (host.bin_dir / "host-local").write_text("#!/bin/sh\n")
    host.ok("install", bundle="A")
    host.ok("install", bundle="B")
    host.ok("uninstall", bundle=None)
    assert sorted(p.name for p in host.bin_dir.iterdir()) == ["host-local"]  # the bin dir was there before
    assert not host.allowlist.parent.exists()  # install made /etc/cni/nsveth: gone with it
    assert host.status()["installed"] is False
    host.ok("uninstall", bundle=None)  # nothing left: not an error


def test_allowlist_can_be_left_unmanaged(host: Host) -> None:
    host.ok("install", "--allowlist-dest", "")
    assert not host.allowlist.exists()
    assert host.status()["files"] == {}


def test_hand_install_and_daemonset_share_one_layout(tmp_path: Path) -> None:
    """The DaemonSet's installer takes over a hand-installed node, and a hand upgrade follows it."""
    node = make_node(tmp_path / "node")
    host = Host(tmp_path / "node")
    host.bin_dir, host.allowlist = node.bin_dir, node.allowlist_dest
    host.ok("install", bundle="A")
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="B") == 0
    assert host.exec_nsveth() == "B"
    host.ok("install", bundle="C")
    assert host.exec_nsveth() == "C"
    assert node.conflist.exists()  # the hand install leaves the DaemonSet's conflist alone
    host.ok("rollback", bundle=None)
    assert host.exec_nsveth() == "B"


@pytest.mark.skipif(not (REPO / "dist" / "nsveth" / "nsveth").exists(), reason="run ./build.sh first")
def test_built_bundle_installs_with_the_default_bundle_path(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.ok("install", bundle=None)  # dist/nsveth
    about = subprocess.run([str(host.bin_dir / "nsveth")], capture_output=True, text=True,
                           env={"CNI_COMMAND": "VERSION", "PATH": os.environ["PATH"]}, timeout=60)
    assert about.returncode == 0, about.stderr
    assert "1.0.0" in json.loads(about.stdout)["supportedVersions"]
    host.ok("uninstall", bundle=None)
    # Install created the bin dir (and its parents): uninstall leaves the host as it found it.
    assert not (host.root / "opt").exists()
    assert not (host.root / "etc").exists()
