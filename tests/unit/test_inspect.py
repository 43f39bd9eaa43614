"""nsveth inspect / cleanup without root: argument parsing, filters, ages, the table, and that they stay light."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from nsveth import cleanup, cli, inspection

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugin")


def entry(**over):
    e = {
        "network": "net1",
        "pod": None,
        "podNamespace": None,
        "podName": None,
        "containerID": "c" * 64,
        "ifname": "eth0",
        "hostIfname": "nsv0123456789ab",
        "addresses": ["10.1.0.2/24"],
        "netns": "/run/netns/p",
        "phase": "added",
        "mode": "ptp",
        "masquerade": None,
        "writtenAt": None,
        "ageSeconds": 5,
        "sender": None,
    }
    e.update(over)
    return e


def test_inspect_arguments():
    args = inspection.parser().parse_args([])
    assert (args.runtime_dir, args.network, args.container, args.pod, args.json) == ("/run/nsveth", None, None, None, False)
    args = inspection.parser().parse_args(["--runtime-dir", "/x", "--network", "n", "--container", "ab", "--pod", "ns/p", "--json"])
    assert (args.runtime_dir, args.network, args.container, args.pod, args.json) == ("/x", "n", "ab", "ns/p", True)


def test_cleanup_arguments():
    args = cleanup.parser({}).parse_args([])
    assert (args.runtime_dir, args.dry_run, args.force, args.cni_path) == ("/run/nsveth", False, False, "/opt/cni/bin:/usr/lib/cni")
    args = cleanup.parser({"CNI_PATH": "/a:/b"}).parse_args(["--dry-run", "--force"])
    assert (args.dry_run, args.force, args.cni_path) == (True, True, "/a:/b")


def test_usage_errors_are_exit_status_2_not_an_exception(capsys):
    assert cli.main(["inspect", "--nope"], {}) == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
    assert cli.main(["cleanup", "--force=1"], {}) == 2
    assert cli.main(["inspect", "-h"], {}) == 0
    assert capsys.readouterr().out.startswith("usage: nsveth inspect")


@pytest.mark.parametrize(
    "seconds,shown", [(None, "-"), (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (7200, "2h"), (86400 * 3 + 5, "3d")]
)
def test_age(seconds, shown):
    assert inspection.age(seconds) == shown


def test_select_filters():
    a = entry(containerID="abc123", pod="shop/web", podNamespace="shop", podName="web")
    b = entry(containerID="abd999", network="net2")
    both = [a, b]
    assert inspection.select(both) == both
    assert inspection.select(both, container="ab") == both
    assert inspection.select(both, container="abc") == [a]
    assert inspection.select(both, network="net2") == [b]
    assert inspection.select(both, pod="web") == [a] == inspection.select(both, pod="shop/web")
    assert inspection.select(both, pod="other/web") == []
    assert inspection.select(both, network="net1", container="abd") == []


def test_table_is_aligned_and_shortens_container_ids():
    rows = [
        entry(pod="shop/web-1", sender={"pid": 4242, "running": True}, addresses=["10.1.0.2/24", "fd00::2/64"]),
        entry(containerID="short", phase="unreadable", addresses=[], netns=None, ageSeconds=None, sender={"pid": 9, "running": False}),
    ]
    lines = inspection.table(rows).splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("NETWORK  POD         CONTAINER     IFNAME  HOST VETH")
    starts = [lines[0].index(h) for h, _ in inspection.COLUMNS]
    for line in lines[1:]:
        for start in starts[1:]:
            assert line[start - 2 : start] == "  " and line[start] != " "  # every column begins where its heading does
    assert "c" * 12 + " " in lines[1] and "c" * 13 not in lines[1]
    assert "10.1.0.2/24,fd00::2/64" in lines[1] and lines[1].endswith("pid 4242")
    assert lines[2].split() == ["net1", "-", "short", "eth0", "nsv0123456789ab", "-", "-", "unreadable", "-", "-"]
    assert inspection.table([]) == "  ".join(h for h, _ in inspection.COLUMNS) + "\n"


def test_inspect_json_of_an_empty_node(tmp_path, capsys):
    assert cli.main(["inspect", "--runtime-dir", str(tmp_path / "nothing"), "--json"], {}) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["inspect", "--runtime-dir", str(tmp_path / "nothing"), "--json", "--network", "x"], {}) == 1


def test_inspect_never_loads_netlink_or_jsonschema(tmp_path):
    code = (
        "import sys; from nsveth import cli; "
        f"status = cli.main(['inspect', '--runtime-dir', {str(tmp_path)!r}], {{}}); "
        "print(status, 'pyroute2' in sys.modules, 'jsonschema' in sys.modules, 'nsveth.netlink' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PLUGIN, check=True)
    assert proc.stdout.splitlines()[-1] == "0 False False False"
