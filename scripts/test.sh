#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs what
# the tests need (scripts/setup.sh test: runtimes, Go, test packages), builds the
# executable and the portable bundle, runs every suite (unit, integration
# against the real kernel, robustness, end-to-end with real clients, the
# portable bundle's checks), then the integration tests in exe mode a second
# time against the portable bundle. Before the tests, the static checks run:
# ruff over the tree, mypy --strict over the plugin (pyproject.toml); a finding
# fails the run but does not stop the tests. Extra arguments go to the first
# pytest run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./scripts/setup.sh test
./build.sh
./scripts/build-portable.sh
status=0
echo "test.sh: checks (ruff over the tree, mypy --strict over plugin/nsveth)" >&2
.venv/bin/ruff check . || status=$?
.venv/bin/mypy || status=$?
.venv/bin/python -m pytest -q "$@" || status=$?
echo "test.sh: integration tests (exe mode) against the portable bundle dist/portable/nsveth" >&2
NSVETH_EXE="$top/dist/portable/nsveth/nsveth" .venv/bin/python -m pytest -q tests/integration -k exe || status=$?
exit "$status"
