"""The crash hook itself: inert unless asked, SIGKILL when asked (no root needed), and that ADD reaches every point in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from nsveth import crashpoints
from nsveth.request import Request
from support import unique

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


@pytest.mark.parametrize("mode", ["ptp", "bridge"])
def test_add_reaches_every_point_in_order(inproc, pod_ns, net, monkeypatch, mode):
    reached = []
    monkeypatch.setattr(crashpoints, "reached", lambda req, point: reached.append(point))
    conf = net.conf(mode=mode, bridge=unique("nsvb")) if mode == "bridge" else net.conf()  # the bridge goes with host_ns
    try:
        reply = inproc.run("ADD", conf, container_id="ctr-points", netns=pod_ns.path)
        assert reply.status == 0, reply.stdout
        assert reached == list(crashpoints.POINTS)
    finally:
        inproc.run("DEL", conf, container_id="ctr-points", netns=pod_ns.path)
