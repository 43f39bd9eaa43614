"""The executable's entry: the only reader of os.environ and stdin, and writer of stdout
(client.py writes the one error of a served request that was lost)."""

# No `from __future__ import annotations` and no `types` here or in client.py and timing.py:
# a plugin-mode client that hands its request to a server imports only these three modules,
# and every module import is start-up time (the annotations here are valid at run time).

import os
import sys


def main() -> None:
    hooks_pending = _lift_ctypes_mark()
    if len(sys.argv) > 1:
        if hooks_pending:
            _install_ctypes_hooks()
        from . import cli

        status = cli.main(sys.argv[1:], os.environ)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    from . import client, timing

    timing.start(os.environ.get("NSVETH_TIMINGS"))
    # A warm server of this build runs the request without this process
    # importing the commands (see client.py).
    served = client.handoff(os.environ)
    if served is None:
        if hooks_pending:
            _install_ctypes_hooks()
        status = plugin(dict(os.environ), client.fallback_reason)
    else:
        status = served
        timing.flush("client " + os.environ.get("CNI_COMMAND", ""))
    sys.stdout.flush()
    sys.stderr.flush()
    # Interpreter teardown (freeing every module, atexit, GC) has nothing left
    # to do and is skipped: output is flushed, files and sockets are closed by
    # the commands, and the kernel frees the rest (figures: bench/README.md).
    os._exit(status)


def plugin(env: dict[str, str], note: str = "") -> int:
    """Run one CNI command with this process's stdin and stdout, as the plugin and as a served request.

    The caller has started timing (timing.start)."""
    _defer("inspect")
    _defer("traceback")
    from . import timing
    from .dispatch import run

    out, status = run(env, lambda: sys.stdin.buffer.read(), note)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    sys.stderr.flush()
    timing.flush(env.get("CNI_COMMAND", ""))
    return status


def _lift_ctypes_mark() -> bool:
    """Make ctypes importable again in the bundle (scripts/pyi_defer_ctypes.py marked it not).

    True if the mark was there: PyInstaller's ctypes hooks are then still to be installed
    (_install_ctypes_hooks) before code that may use ctypes runs."""
    if "ctypes" not in sys.modules or sys.modules["ctypes"] is not None:
        return False  # run from source, or a bundle built without the mark
    del sys.modules["ctypes"]
    return True


def _install_ctypes_hooks() -> None:
    import pyimod03_ctypes  # type: ignore[import-not-found]  # PyInstaller's bootstrap module, in the bundle only

    pyimod03_ctypes.install()


class _Deferred(type(sys)):  # type: ignore[misc]  # types.ModuleType, without importing types at start-up
    """Stands in for a module until one of its attributes is used, then loads it."""

    def __getattr__(self, attr: str) -> object:
        name = str(self.__name__)
        del sys.modules[name]
        real = __import__(name)
        self.__dict__.update(real.__dict__)  # importers holding the stand-in now see the real names
        return getattr(real, attr)


def _defer(name: str) -> None:
    """Import `name` only when something uses it.

    dataclasses imports inspect (with its own imports) only to build a
    __doc__ for classes that have none; nsveth's dataclasses all have one, so
    a plain run never touches inspect. logging imports traceback (with
    textwrap and linecache) only to format exceptions. Code that does use them
    (jsonschema on a validation-cache miss, a logged exception) gets the real
    module transparently.
    (importlib's LazyLoader does not help here: `import inspect` itself reads
    the module's __spec__, which makes LazyLoader load it at once.)
    """
    if name not in sys.modules:
        sys.modules[name] = _Deferred(name)  # __spec__ None: importers take it as loaded
