"""Helpers for the installer tests: a fake node (CNI bin and conf dirs in a
temp dir, with the Go plugins the chain needs) and fake nsveth bundles.

The fake bundle has the shape of a PyInstaller one-dir bundle: an executable
`nsveth` that needs files from `_internal/` next to its real path, so exec'ing
the installed symlink only works when the whole directory was installed.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import support
import yaml

REPO = Path(support.REPO)
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY / "installer"))

from nsveth_install import cli  # noqa: E402

FAKE_NSVETH = """#!/bin/sh
# Like a one-dir bundle: find _internal/ beside the real executable.
here=$(dirname "$(readlink -f "$0")")
exec cat "$here/_internal/version"
"""


def manifest_docs() -> list[dict]:
    with open(DEPLOY / "nsveth-daemonset.yaml") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def configmap_data() -> dict[str, str]:
    (cm,) = [d for d in manifest_docs() if d["kind"] == "ConfigMap"]
    return cm["data"]


def configmap_template() -> str:
    return configmap_data()["conflist.template.json"]


def make_bundle(path: Path, version: str) -> Path:
    (path / "_internal").mkdir(parents=True)
    exe = path / "nsveth"
    exe.write_text(FAKE_NSVETH)
    exe.chmod(0o755)
    (path / "_internal" / "version").write_text(version)
    (path / "_internal" / "libfake.so").write_bytes(os.urandom(4096))
    return path


def make_executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> None:
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class Node:
    root: Path
    bin_dir: Path
    conf_dir: Path
    allowlist_dest: Path
    config_dir: Path  # the ConfigMap mount
    ready: Path
    bundles: dict[str, Path]

    @property
    def template(self) -> Path:
        return self.config_dir / "conflist.template.json"

    @property
    def conflist(self) -> Path:
        return self.conf_dir / "10-nsveth.conflist"

    def bundle(self, version: str) -> Path:
        if version not in self.bundles:
            self.bundles[version] = make_bundle(self.root / "bundles" / version, version)
        return self.bundles[version]

    def args(self, *extra: str, bundle: str = "A") -> list[str]:
        return [
            "--once", "--bundle", str(self.bundle(bundle)), "--template", str(self.template),
            "--cni-bin-dir", str(self.bin_dir), "--cni-conf-dir", str(self.conf_dir),
            "--allowlist-src", str(self.config_dir / "allowlist.conf"),
            "--allowlist-dest", str(self.allowlist_dest), "--ready-file", str(self.ready),
            "--cluster-cidrs-file", str(self.config_dir / "clusterCIDRs"),
            "--service-account-dir", str(self.root / "no-sa"), *extra,
        ]

    def run(self, *extra: str, bundle: str = "A", env: dict[str, str] | None = None) -> int:
        return cli.main(self.args(*extra, bundle=bundle), env=dict(env or {}))

    def snapshot(self, dir_times: bool = True) -> dict[str, tuple]:
        """Everything observable about the node's dirs: names, inodes, mtimes, contents.

        dir_times=False leaves out directories' mtimes, which any create+delete
        in them changes even when the result is the same set of entries."""
        state = {}
        for top in (self.bin_dir, self.conf_dir, self.allowlist_dest.parent):
            for dirpath, dirnames, filenames in os.walk(top):
                for name in dirnames + filenames + ["."]:
                    p = Path(dirpath, name)
                    st = os.lstat(p)
                    content = (os.readlink(p) if stat.S_ISLNK(st.st_mode)
                               else p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
                    mtime = st.st_mtime_ns if dir_times or not stat.S_ISDIR(st.st_mode) else None
                    state[str(p)] = (st.st_ino, mtime, st.st_mode, content)
        return state


def make_node(tmp_path: Path) -> Node:
    n = Node(root=tmp_path, bin_dir=tmp_path / "opt/cni/bin", conf_dir=tmp_path / "etc/cni/net.d",
             allowlist_dest=tmp_path / "etc/cni/nsveth/allowlist.conf",
             config_dir=tmp_path / "config", ready=tmp_path / "run/ready", bundles={})
    for d in (n.bin_dir, n.conf_dir, n.allowlist_dest.parent, n.config_dir):
        d.mkdir(parents=True)
    for plugin in ("host-local", "portmap"):
        make_executable(n.bin_dir / plugin)
    # The ConfigMap as the kubelet mounts it: one file per key.
    for key, value in configmap_data().items():
        (n.config_dir / key).write_text(value)
    return n
