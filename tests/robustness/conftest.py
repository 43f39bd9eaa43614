"""Fixtures of the robustness suites: one sandboxed world per module, input counters."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import support  # noqa: E402
import world as world_mod  # noqa: E402

TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory, request):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    w = world_mod.World(str(tmp_path_factory.mktemp("world")))
    try:
        yield w
    finally:
        TRIED[request.module.__name__] = TRIED.get(request.module.__name__, 0) + w.tried
        w.close()


@pytest.fixture
def need_exe():
    if not os.access(support.EXECUTABLE, os.X_OK):
        pytest.fail(f"{support.EXECUTABLE} is missing: run ./build.sh first")


def pytest_terminal_summary(terminalreporter):
    if TRIED:
        total = sum(TRIED.values())
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(TRIED.items()))
        terminalreporter.write_line(f"robustness: {total} inputs tried ({parts})")
