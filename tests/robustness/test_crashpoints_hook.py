"""The crash hook itself (no root needed): inert unless asked, SIGKILL when asked, and where ADD calls it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from nsveth import crashpoints
from nsveth.request import Request

PLUGIN = os.path.dirname(os.path.dirname(crashpoints.__file__))


def _req(env: dict) -> Request:
    return Request("ADD", "c", "/x", "eth0", {}, (), env)


def test_inert_without_or_with_another_point():
    crashpoints.reached(_req({}), "after-ipam")
    crashpoints.reached(_req({crashpoints.ENV: "after-veth"}), "after-ipam")
    crashpoints.reached(_req({crashpoints.ENV: ""}), "after-ipam")


def test_reads_the_request_env_not_os_environ(monkeypatch):
    monkeypatch.setenv(crashpoints.ENV, "after-ipam")
    crashpoints.reached(_req({}), "after-ipam")  # would kill the test run if it read os.environ


def test_kills_with_sigkill_at_the_named_point():
    code = (
        "from nsveth import crashpoints\n"
        "from nsveth.request import Request\n"
        "req = Request('ADD', 'c', '/x', 'eth0', {}, (), {'NSVETH_TEST_CRASH_AT': 'after-host'})\n"
        "crashpoints.reached(req, 'after-veth')\n"
        "print('passed after-veth', flush=True)\n"
        "crashpoints.reached(req, 'after-host')\n"
        "print('survived after-host', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": PLUGIN}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "passed after-veth\n"


def test_add_calls_every_core_point_in_order():
    with open(os.path.join(os.path.dirname(crashpoints.__file__), "commands.py")) as f:
        source = f.read()
    positions = [source.find(f'crashpoints.reached(req, "{p}")') for p in crashpoints.POINTS[:5]]
    assert all(p > 0 for p in positions) and positions == sorted(positions), positions
