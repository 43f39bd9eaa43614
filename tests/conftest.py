"""Fixtures shared by all test suites (see support.py for the helpers)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugin"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support  # noqa: E402


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")


@pytest.fixture
def host_ns():
    _needs_root()
    with support.netns("nsvh-") as ns:
        yield ns


@pytest.fixture
def pod_ns():
    _needs_root()
    with support.netns("nsvp-") as ns:
        yield ns


@pytest.fixture
def net(tmp_path):
    return support.Network(str(tmp_path))


@pytest.fixture(scope="session")
def nsveth_server():
    """One warm server for the whole run, from the built executable, on a private socket."""
    _needs_root()
    server = support.Server()
    try:
        server.start()
        yield server
    finally:
        server.remove()  # no test leaves a server running


@pytest.fixture(params=["inproc", "exe", "served"])
def plugin(request, host_ns):
    server = request.getfixturevalue("nsveth_server") if request.param == "served" else None
    return support.Plugin(host_ns, request.param, server)



@pytest.fixture
def inproc(host_ns):
    return support.Plugin(host_ns, "inproc")


@pytest.fixture
def exe(host_ns):
    return support.Plugin(host_ns, "exe")
