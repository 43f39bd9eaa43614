"""The DaemonSet mode: --watch keeps the node in sync and drives readiness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from deploy_support import DEPLOY, Node


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_watch(node: Node, env: dict[str, str] | None = None) -> subprocess.Popen:
    args = [a for a in node.args("--pod-cidr", "10.244.3.0/24", "--interval", "0.2") if a != "--once"]
    return subprocess.Popen(
        [sys.executable, "-m", "nsveth_install", "--watch", *args],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(DEPLOY / "installer"), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err


def update_template(node: Node, text: str) -> None:
    """Replace the template in one rename, as the kubelet updates a ConfigMap volume."""
    tmp = node.template.with_name(".tmp-template")
    tmp.write_text(text)
    tmp.rename(node.template)


def ready(node: Node) -> dict | None:
    try:
        return json.loads(node.ready.read_text())
    except FileNotFoundError:
        return None


def mtu(node: Node) -> int:
    return json.loads(node.conflist.read_text())["plugins"][0]["mtu"]


def test_watch_follows_the_template_and_reports_readiness(node: Node) -> None:
    proc = start_watch(node)
    try:
        wait_for(node.ready.exists, "the first install")
        assert mtu(node) == 1500
        good = node.template.read_text()

        # A ConfigMap update re-renders the conflist on the next pass.
        update_template(node, good.replace('"mtu": 1500', '"mtu": 9000'))
        wait_for(lambda: mtu(node) == 9000, "the re-rendered conflist")

        # A broken template: not ready, the last good conflist stays.
        update_template(node, "{broken")
        wait_for(lambda: not node.ready.exists(), "readiness to drop")
        time.sleep(1)  # several more failing passes
        assert mtu(node) == 9000

        update_template(node, good)
        wait_for(node.ready.exists, "readiness to come back")
        assert mtu(node) == 1500
    finally:
        code, err = stop(proc)
    assert code == 0
    assert not node.ready.exists()  # a stopped installer is not ready
    assert err.count("is not valid JSON") == 1  # a repeated failure is logged once
    assert "Traceback" not in err


def test_watch_in_uninstall_mode_removes_once_and_stays_up(node: Node) -> None:
    assert node.run("--pod-cidr", "10.244.3.0/24") == 0
    proc = start_watch(node, {"NSVETH_ACTION": "uninstall"})
    try:
        wait_for(lambda: ready(node) == {"uninstalled": True}, "the uninstall")
        assert not node.conflist.exists() and not os.path.lexists(node.bin_dir / "nsveth")
        time.sleep(0.5)
        assert proc.poll() is None  # no crash loop in the DaemonSet
        assert not (node.bin_dir / "nsveth.d").exists()
    finally:
        code, _ = stop(proc)
    assert code == 0
