"""Property-based fuzzing of every input nsveth reads from outside (issue 8).

For any input - stdin bytes, config fields, CNI_ARGS, runtimeConfig,
prevResult, CNI_* variables - the plugin must answer with a valid result or
exactly one CNI error JSON with a well-known code on stdout; never a
traceback, never a hang, never a change to the host (see world.py for what
is compared and how inputs are kept inside a sandbox).

Most examples run in-process (`dispatch.run`, fast); a smaller sample runs
the built executable to catch anything only the real process shows (stderr
tracebacks, exit status, signals). Budget: NSVETH_FUZZ_EXAMPLES examples per
in-process strategy (default 100), NSVETH_FUZZ_EXE_EXAMPLES per executable
strategy (default 25). A failing input is written to corpus/ (see
test_corpus.py, which replays every stored input on each run).
"""

from __future__ import annotations

import os

import fuzzgen
import pytest
from hypothesis import HealthCheck, given, settings
from world import saved_failures

INPROC = int(os.environ.get("NSVETH_FUZZ_EXAMPLES", "100"))
EXE = int(os.environ.get("NSVETH_FUZZ_EXE_EXAMPLES", "25"))


def budget(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,  # hangs are caught by world.TIMEOUT; slow examples are normal (netns snapshots)
        suppress_health_check=list(HealthCheck),
        database=None,  # no cross-run state: failures go to corpus/ instead
        print_blob=True,
    )


STRATEGIES = {
    "raw-stdin": fuzzgen.raw_stdin(),
    "raw-env": fuzzgen.raw_env(),
    "damaged-bytes": fuzzgen.damaged_bytes(),
    "valid": fuzzgen.valid_case(),
    "mutated-config": fuzzgen.mutated_config(),
    "mutated-ipam": fuzzgen.mutated_config(focus="ipam"),
    "mutated-prevResult": fuzzgen.mutated_config(focus="prevResult"),
    "mutated-runtimeConfig": fuzzgen.mutated_config(focus="runtimeConfig"),
    "mutated-args": fuzzgen.mutated_config(focus="args"),
    "mutated-env": fuzzgen.mutated_env(),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_inproc(world, name):
    @budget(INPROC)
    @given(case=STRATEGIES[name])
    def prop(case):
        world.exercise(case, "inproc")

    with saved_failures():
        prop()


@pytest.mark.parametrize("name", ["raw-stdin", "raw-env", "damaged-bytes", "mutated-config", "mutated-env", "valid"])
def test_served(world, need_exe, nsveth_server, name):
    """The executable's sample again, each request handed to the session's warm server."""
    world.server = nsveth_server

    @budget(EXE)
    @given(case=STRATEGIES[name])
    def prop(case):
        world.exercise(case, "served")

    with saved_failures():
        prop()


@pytest.mark.parametrize("name", ["raw-stdin", "raw-env", "damaged-bytes", "mutated-config", "mutated-env", "valid"])
def test_exe(world, need_exe, name):
    @budget(EXE)
    @given(case=STRATEGIES[name])
    def prop(case):
        world.exercise(case, "exe")

    with saved_failures():
        prop()
