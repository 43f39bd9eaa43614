"""The built executable reports its phases with NSVETH_TIMINGS (what bench/bench.py reads)."""

from __future__ import annotations

import json


def test_add_and_del_report_their_phases(exe, pod_ns, net, tmp_path):
    sink = tmp_path / "timings.jsonl"
    conf = net.conf("1.0.0")
    add = exe.run("ADD", conf, container_id="ctr-timing", netns=pod_ns.path, NSVETH_TIMINGS=str(sink))
    assert add.status == 0, add.stdout
    dele = exe.run("DEL", {**conf, "prevResult": add.json}, container_id="ctr-timing", netns=pod_ns.path, NSVETH_TIMINGS=str(sink))
    assert dele.status == 0, dele.stdout
    add_rec, del_rec = (json.loads(line) for line in sink.read_text().splitlines())
    assert add_rec["command"] == "ADD" and del_rec["command"] == "DEL"
    add_names = [m[0] for m in add_rec["marks"]]
    for phase in ("start", "import config", "config", "import commands", "ipam", "veth", "host side", "pod side", "result", "exit"):
        assert phase in add_names
    assert add_names.index("config") < add_names.index("ipam") < add_names.index("veth") < add_names.index("pod side")
    assert {"links", "ipam"} <= {m[0] for m in del_rec["marks"]}
    assert 0 < add_rec["maxrss_kb"] < 200 * 1024


def test_no_record_without_the_variable(exe, pod_ns, net, tmp_path):
    conf = net.conf("1.0.0")
    add = exe.run("ADD", conf, container_id="ctr-notiming", netns=pod_ns.path)
    assert add.status == 0
    assert exe.run("DEL", conf, container_id="ctr-notiming", netns=pod_ns.path).status == 0
    assert list(tmp_path.glob("*.jsonl")) == []
