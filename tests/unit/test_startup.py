"""Start-up techniques of the executable (main.py): inspect is deferred, and nothing on the hot path wakes it."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "plugin")


def test_every_dataclass_has_a_docstring():
    # Without one, dataclasses builds __doc__ from inspect.signature() at import.
    missing = []
    for path in glob.glob(os.path.join(PLUGIN, "nsveth", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                if not ast.get_docstring(node):
                    missing.append(f"{os.path.basename(path)}:{node.name}")
    assert missing == []


def run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-O", "-I", "-c", f"import sys; sys.path.insert(0, {PLUGIN!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def test_hot_path_leaves_inspect_deferred():
    out = run(
        "from nsveth import main; main._defer('inspect'); main._defer('traceback'); "
        "import nsveth.dispatch, nsveth.config, nsveth.commands, nsveth.advertise, nsveth.sysctl, nsveth.bridge, nsveth.masq; "
        "print(type(sys.modules['inspect']).__name__, type(sys.modules['traceback']).__name__)"
    )
    assert out == "_Deferred _Deferred"


def test_deferred_traceback_still_formats_logged_exceptions():
    out = run(
        "from nsveth import main; main._defer('traceback'); import io, logging\n"
        "buf = io.StringIO(); log = logging.Logger('t'); log.addHandler(logging.StreamHandler(buf))\n"
        "try:\n 1/0\nexcept ZeroDivisionError:\n log.exception('boom')\n"
        "print('ZeroDivisionError' in buf.getvalue() and 'Traceback' in buf.getvalue())"
    )
    assert out == "True"


def test_deferred_inspect_loads_on_use():
    out = run(
        "from nsveth import main; main._defer('inspect'); import inspect; "
        "print(inspect.signature(lambda a, b=1: 0), type(sys.modules['inspect']).__name__, inspect.isfunction(len))"
    )
    assert out == "(a, b=1) module False"


def test_schema_validation_works_after_deferral():
    out = run(
        "from nsveth import main, schema; main._defer('inspect'); from nsveth.errors import CNIError\n"
        "try:\n schema.validate({'cniVersion': '1.0.0', 'name': 'n', 'type': 'nsveth', 'ipam': {'type': 'h'}, 'mtu': 1})\n"
        "except CNIError as e:\n print(e.code, e.msg)"
    )
    assert out.startswith("7 ") and "mtu" in out
