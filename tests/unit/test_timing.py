"""Phase timings: nothing is collected unless the executable starts it; a run appends one JSON record."""

from __future__ import annotations

import json

import pytest
from nsveth import timing


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(timing, "_marks", None)
    monkeypatch.setattr(timing, "_sink", None)


def test_marks_are_ignored_until_started(fresh, tmp_path):
    timing.mark("imports")
    assert not timing.collecting() and timing.durations() == []
    timing.flush("ADD")  # no sink, nothing started: a no-op
    assert list(tmp_path.iterdir()) == []


def test_record_lists_marks_in_order(fresh, tmp_path):
    sink = tmp_path / "t.jsonl"
    timing.start(str(sink))
    for name in ("import config", "config", "ipam"):
        timing.mark(name)
    assert [n for n, _ in timing.durations()] == ["import config", "config", "ipam"]
    assert all(ms >= 0 for _, ms in timing.durations())
    assert "ipam=" in timing.summary()
    timing.flush("ADD")
    timing.flush("DEL")
    first, second = (json.loads(line) for line in sink.read_text().splitlines())
    assert first["command"] == "ADD" and second["command"] == "DEL"
    names = [m[0] for m in first["marks"]]
    assert names == ["start", "import config", "config", "ipam", "exit"]
    wall = [m[1] for m in first["marks"]]
    cpu = [m[2] for m in first["marks"]]
    assert wall == sorted(wall) and cpu == sorted(cpu)
    assert first["maxrss_kb"] > 0


def test_started_without_sink_collects_but_writes_nothing(fresh, tmp_path):
    timing.start(None)
    timing.mark("x")
    assert timing.collecting()
    timing.flush("ADD")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_sink_never_fails_the_command(fresh, tmp_path, capfd):
    timing.start(str(tmp_path / "no" / "such" / "dir"))
    timing.flush("ADD")
    assert "cannot write timings" in capfd.readouterr().err


@pytest.mark.parametrize("command", ["ADD", "", 'q"uote\\back', "ctl\n\x00\x7f", "é😀", "\udcff"])
def test_record_is_json_whatever_the_command(fresh, tmp_path, command):
    """The record is written without the json module (a served client never imports it)."""
    sink = tmp_path / "t.jsonl"
    timing.start(str(sink), origin=(5, 7))
    timing.mark("phase")
    timing.flush(command)
    record = json.loads(sink.read_text())
    assert record["command"] == command
    assert record["marks"][0] == ["start", 5, 7] and [m[0] for m in record["marks"]] == ["start", "phase", "exit"]
    assert isinstance(record["children_cpu_ns"], int)
