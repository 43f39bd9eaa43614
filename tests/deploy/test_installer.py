"""The installer against a fake node in a temp dir (no root needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import DEPLOY, Node, make_executable

VERSIONS = "nsveth.d"


def exec_nsveth(node: Node) -> str:
    return subprocess.run([str(node.bin_dir / "nsveth")], capture_output=True, text=True, check=True).stdout


def installed_versions(node: Node) -> set[str]:
    return {p.name for p in (node.bin_dir / VERSIONS).iterdir() if p.is_dir()}


def record(node: Node) -> dict:
    return json.loads((node.bin_dir / VERSIONS / "install.json").read_text())


def test_install_lays_out_bundle_symlink_and_conflist(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0

    link = node.bin_dir / "nsveth"
    target = os.readlink(link)
    assert target.startswith(f"{VERSIONS}/") and target.endswith("/nsveth")
    assert not os.path.isabs(target)  # must resolve on the host, not only under the mount
    assert exec_nsveth(node) == "A"
    assert (node.bin_dir / target).parent.joinpath("_internal", "libfake.so").is_file()

    conf = json.loads(node.conflist.read_text())
    assert conf["plugins"][0]["type"] == "nsveth"
    assert conf["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert conf["plugins"][0]["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert oct(node.conflist.stat().st_mode & 0o777) == oct(0o644)

    rec = record(node)
    assert rec["bundles"] == [target.split("/")[1]]
    assert rec["files"]["conflist"]["path"] == str(node.conflist)
    ready = json.loads(node.ready.read_text())
    assert ready["bundle"] == rec["bundles"][0]
    # Nothing but the final names is left: no temp files anywhere.
    leftovers = [p for d in (node.bin_dir, node.bin_dir / VERSIONS, node.conf_dir)
                 for p in d.iterdir() if p.name.startswith(".nsveth-tmp-")]
    assert leftovers == []


def test_rerun_with_equal_input_changes_nothing(node: Node, caplog) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    before = node.snapshot()
    caplog.clear()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert node.snapshot() == before  # same inodes and mtimes: nothing rewritten
    assert [r.message for r in caplog.records] == []


def test_upgrade_switches_version_and_keeps_only_current_and_previous(node: Node) -> None:
    names = []
    for version in ("A", "B", "C"):
        assert node.run("--pod-cidr", "10.244.3.0/24", bundle=version) == 0
        assert exec_nsveth(node) == version
        names.append(record(node)["bundles"][-1])
    assert len(set(names)) == 3
    assert installed_versions(node) == set(names[1:])
    assert record(node)["bundles"] == names[1:]
    # Going back to an old image reinstalls it; B stays as previous.
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="A") == 0
    assert exec_nsveth(node) == "A"
    assert installed_versions(node) == {names[2], names[0]}


def test_damaged_installed_copy_is_replaced(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    (version,) = installed_versions(node)
    (node.bin_dir / VERSIONS / version / "_internal" / "version").write_text("corrupt")
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert exec_nsveth(node) == "A"


def test_leftovers_of_a_killed_installer_are_swept(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    stale = node.bin_dir / VERSIONS / ".nsveth-tmp-0123456789abcdef-deadbeef"
    (stale / "_internal").mkdir(parents=True)
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="B") == 0
    assert not stale.exists()


def test_foreign_conflist_is_not_overwritten_without_force(node: Node, caplog) -> None:
    node.conflist.write_text('{"cniVersion": "1.0.0", "name": "theirs", "plugins": []}')
    before = node.snapshot()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 1
    assert "refusing to overwrite" in caplog.text and str(node.conflist) in caplog.text
    assert node.snapshot() == before  # not even the bundle was copied
    assert not node.ready.exists()

    assert node.run("--pod-cidr", "10.244.3.0/24", "--force") == 0
    assert json.loads(node.conflist.read_text())["name"] == "nsveth"
    # Forced once, it is ours now: later runs and uninstall treat it as ours.
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert node.run("--uninstall") == 0
    assert not node.conflist.exists()


def test_conflist_edited_after_install_is_no_longer_ours(node: Node, caplog) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    node.conflist.write_text(node.conflist.read_text().replace("1500", "1400"))
    assert node.run("--pod-cidr", "10.244.3.0/24", "--pod-cidr", "fd00:1::/64") == 1
    assert "1400" in node.conflist.read_text()
    assert "refusing" in caplog.text


def test_identical_unrecorded_conflist_is_adopted(node: Node, tmp_path: Path) -> None:
    # What a crash between the conflist rename and the manifest update leaves.
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    (node.bin_dir / VERSIONS / "install.json").unlink()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert record(node)["files"]["conflist"]["path"] == str(node.conflist)


def test_foreign_nsveth_binary_is_not_replaced_without_force(node: Node, caplog) -> None:
    make_executable(node.bin_dir / "nsveth", "#!/bin/sh\necho old\n")
    before = node.snapshot()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 1
    assert "was not installed by nsveth-install" in caplog.text
    assert node.snapshot() == before
    assert node.run("--pod-cidr", "10.244.3.0/24", "--force") == 0
    assert exec_nsveth(node) == "A"


def test_template_change_rerenders_and_conflist_rename_moves_file(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    node.template.write_text(node.template.read_text().replace('"mtu": 1500', '"mtu": 9000'))
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert json.loads(node.conflist.read_text())["plugins"][0]["mtu"] == 9000
    assert record(node)["files"]["conflist"]["sha256s"] == [_sha(node.conflist)]

    assert node.run("--pod-cidr", "10.244.3.0/24", "--conflist-name", "05-nsveth.conflist") == 0
    assert not node.conflist.exists()
    assert (node.conf_dir / "05-nsveth.conflist").exists()


def test_allowlist_follows_the_configmap_key(node: Node) -> None:
    src = node.config_dir / "allowlist.conf"
    src.write_text("^net\\.ipv4\\.conf\\.IFNAME\\.arp_notify$\n")
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert node.allowlist_dest.read_text() == src.read_text()
    src.unlink()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert not node.allowlist_dest.exists()


def test_foreign_allowlist_is_not_overwritten(node: Node) -> None:
    node.allowlist_dest.write_text("theirs\n")
    (node.config_dir / "allowlist.conf").write_text("ours\n")
    assert node.run("--pod-cidr", "10.244.3.0/24") == 1
    assert node.allowlist_dest.read_text() == "theirs\n"


def test_uninstall_removes_exactly_what_was_installed(node: Node) -> None:
    foreign = {
        node.conf_dir / "99-other.conflist": "{}",
        node.bin_dir / "bridge": "#!/bin/sh\n",
        node.allowlist_dest.parent / "notes.txt": "keep",
    }
    for path, text in foreign.items():
        path.write_text(text)
    (node.config_dir / "allowlist.conf").write_text("x\n")
    before = node.snapshot(dir_times=False)
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="A") == 0
    assert node.run("--pod-cidr", "10.244.3.0/24", bundle="B") == 0

    assert node.run("--uninstall") == 0
    assert node.snapshot(dir_times=False) == before
    assert node.run("--uninstall") == 0  # nothing left to do is not an error
    assert node.snapshot(dir_times=False) == before


def test_uninstall_leaves_foreign_files_in_the_versions_dir(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    (node.bin_dir / VERSIONS / "README").write_text("someone else's")
    assert node.run("--uninstall") == 0
    assert [p.name for p in (node.bin_dir / VERSIONS).iterdir()] == ["README"]
    assert not os.path.lexists(node.bin_dir / "nsveth")


def test_uninstall_keeps_a_conflist_changed_since_install(node: Node, caplog) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    node.conflist.write_text("{}")
    assert node.run("--uninstall") == 0
    assert node.conflist.read_text() == "{}"
    assert "changed since" in caplog.text


def test_uninstall_from_env_action(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    assert node.run(env={"NSVETH_ACTION": "uninstall"}) == 0
    assert not node.conflist.exists()
    assert json.loads(node.ready.read_text()) == {"uninstalled": True}


def test_pod_cidr_from_env(node: Node) -> None:
    assert node.run(env={"NSVETH_POD_CIDR": "10.1.0.0/24, fd00:1::/64"}) == 0
    ranges = json.loads(node.conflist.read_text())["plugins"][0]["ipam"]["ranges"]
    assert ranges == [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00:1::/64"}]]


BAD = {
    "no pod CIDR": ([], {}, "pod CIDR is needed"),
    "not a CIDR": (["--pod-cidr", "10.244.300.0/24"], {}, "invalid pod CIDR '10.244.300.0/24'"),
    "host bits": (["--pod-cidr", "10.244.3.1/24"], {}, "has host bits set"),
    "two IPv4": (["--pod-cidr", "10.1.0.0/24,10.2.0.0/24"], {}, "more than one IPv4 pod CIDR"),
    "empty": (["--pod-cidr", " , "], {}, "pod CIDR given is empty"),
    "NODE_NAME, not in cluster": ([], {"NODE_NAME": "n1"}, "not running in a cluster"),
    "missing bundle": (["--bundle", "/nonexistent/bundle"], {}, "does not exist"),
}


@pytest.mark.parametrize("extra,env,message", BAD.values(), ids=BAD.keys())
def test_bad_input_fails_cleanly_without_changes(node: Node, extra, env, message) -> None:
    if "--bundle" in extra:
        extra = [*extra, "--pod-cidr", "10.0.0.0/24"]
    before = node.snapshot()
    proc = _cli_subprocess(node, extra, env)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert node.snapshot() == before
    assert not node.ready.exists()


BAD_TEMPLATES = {
    "not JSON": ('{"plugins": [', "is not valid JSON"),
    "nsveth not first": ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "portmap"}, {"type": "nsveth"}]}',
                         "first plugin in the conflist must be type 'nsveth'"),
    "no plugins": ('{"cniVersion": "1.0.0", "name": "n", "plugins": []}', "non-empty 'plugins'"),
    "no name": ('{"cniVersion": "1.0.0", "plugins": [{"type": "nsveth"}]}', "'name'"),
    "typo placeholder": ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nsveth", "x": "@nsveth:podCidr"}]}',
                         "unknown placeholder(s) @nsveth:podCidr"),
    "missing plugin": ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nsveth"}, {"type": "bandwidth"}]}',
                       "missing from"),
}


@pytest.mark.parametrize("template,message", BAD_TEMPLATES.values(), ids=BAD_TEMPLATES.keys())
def test_bad_template_fails_cleanly_without_changes(node: Node, template, message) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    node.template.write_text(template)
    before = node.snapshot()
    proc = _cli_subprocess(node, ["--pod-cidr", "10.244.3.0/24"], {})
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert node.snapshot() == before  # the previous, good conflist stays
    assert not node.ready.exists()


def _cli_subprocess(node: Node, extra: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nsveth_install", *node.args(*extra)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(DEPLOY / "installer"), **env},
        capture_output=True, text=True, timeout=60,
    )


def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unrecorded_mismatching_version_dir_is_not_replaced(node: Node, caplog) -> None:
    from nsveth_install import bundle

    squatter = node.bin_dir / VERSIONS / bundle.tree_hash(node.bundle("A"))
    (squatter / "_internal").mkdir(parents=True)
    (squatter / "nsveth").write_text("not the bundle")
    before = node.snapshot()
    assert node.run("--pod-cidr", "10.244.3.0/24") == 1
    assert "does not match the bundle" in caplog.text
    assert node.snapshot() == before


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--interval", "soon"], ["--once", "--watch"], ["--bogus"]])
def test_bad_command_line_is_a_usage_error(node: Node, argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "nsveth_install", *argv],
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(DEPLOY / "installer")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: nsveth-install" in proc.stderr and "Traceback" not in proc.stderr


def test_uninstall_without_an_install_leaves_a_foreign_nsveth(node: Node) -> None:
    make_executable(node.bin_dir / "nsveth", "#!/bin/sh\necho theirs\n")
    before = node.snapshot()
    assert node.run("--uninstall") == 0
    assert node.snapshot() == before
