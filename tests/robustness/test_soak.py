"""CI-sized soak: the soak script (soak.py) with a small cycle count, as the executable and in-process.

The in-process run is the one that sees the plugin's own fd leaks (the soak
process holds every fd the plugin forgets to close); the executable run adds
crash-injected ADDs that only a concurrent GC cleans up. NSVETH_SOAK_CYCLES
scales both (default 48; the full soak is `soak.py --cycles 500`).
"""

from __future__ import annotations

import os

import pytest
import soak

CYCLES = int(os.environ.get("NSVETH_SOAK_CYCLES", "48"))


@pytest.mark.parametrize("mode", ["inproc", "exe"])
def test_soak(mode, need_exe):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    args = soak.parse(["--cycles", str(CYCLES), "--parallel", "8", "--mode", mode, "--crash-every", "10", "--gc-interval", "1"])
    figures = soak.run(args)
    print(figures)
    assert figures["failures"] == 0, figures["first_failures"]
    assert figures["leaks"] == []
    if mode == "exe":
        assert figures["crash_injected_adds"] == CYCLES // 10
    assert figures["fds"]["end"] == figures["fds"]["after_warmup"]
