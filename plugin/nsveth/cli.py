"""Subcommands of the executable (`nsveth serve`, `nsveth inspect`, ...).

A runtime never passes arguments to a CNI plugin, so any argument selects a
subcommand instead of the plugin path. Each subcommand is a function here that
imports its module when chosen (a plain import statement, so PyInstaller sees
it), so the plugin path never pays for them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, MutableMapping

# (arguments, the process environment main.py hands down: no subcommand reads os.environ itself)
Subcommand = Callable[[list[str], MutableMapping[str, str]], int]


def parser(prog: str, description: str, default_runtime_dir: str) -> argparse.ArgumentParser:
    """The parser a subcommand over the networks' records starts from: its help text and --runtime-dir."""
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--runtime-dir",
        default=default_runtime_dir,
        help=f"the networks' runtimeDir (default {default_runtime_dir})",
    )
    return p


def _serve(argv: list[str], env: MutableMapping[str, str]) -> int:
    from . import serve

    return serve.main(argv, env)


# name -> (runner, one-line help); each runner imports its module itself.
SUBCOMMANDS: dict[str, tuple[Subcommand, str]] = {
    "serve": (_serve, "run the warm server that plugin mode hands requests to"),
}


def usage() -> str:
    lines = ["usage: nsveth [SUBCOMMAND [ARGS...]]", "", "Without arguments nsveth is a CNI plugin (CNI_COMMAND and stdin)."]
    if SUBCOMMANDS:
        lines += ["", "subcommands:"]
        lines += [f"  {name:<10} {help_}" for name, (_, help_) in sorted(SUBCOMMANDS.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str], env: MutableMapping[str, str]) -> int:
    name = argv[0]
    if name in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if name not in SUBCOMMANDS:
        sys.stderr.write(f"nsveth: unknown subcommand {name!r}\n\n{usage()}")
        return 2
    try:
        return SUBCOMMANDS[name][0](argv[1:], env)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else int(e.code is not None)


def _inspect(argv: list[str], env: MutableMapping[str, str]) -> int:
    from . import inspection

    return inspection.main(argv)


def _cleanup(argv: list[str], env: MutableMapping[str, str]) -> int:
    from . import cleanup

    return cleanup.main(argv, env)


SUBCOMMANDS["inspect"] = (_inspect, "list the attachments on this node (nsveth inspect --help)")
SUBCOMMANDS["cleanup"] = (_cleanup, "remove what nsveth left on this host, for hosts leaving nsveth (--help)")
