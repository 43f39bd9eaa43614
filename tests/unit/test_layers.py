"""The pure core (request, config and its schema, results, versions, errors, CHECK's comparison)
imports nothing of the kernel-facing shell: it runs, and is tested, without root, netlink or files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugin")
CORE = ("request", "config", "schema", "result", "versions", "errors", "check")


def test_the_core_loads_only_the_core():
    code = (
        f"import sys, json; sys.path.insert(0, {PLUGIN!r}); "
        + "; ".join(f"import nsveth.{name}" for name in CORE)
        + "; print(json.dumps(sorted(m for m in sys.modules if m.startswith(('nsveth.', 'pyroute2', 'jsonschema')))))"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == sorted(f"nsveth.{name}" for name in CORE)
