#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs what
# the tests need (scripts/setup.sh test: runtimes, Go, test packages), builds the
# executable, runs every suite (unit, integration against the real kernel,
# robustness, end-to-end with real clients). Extra arguments go to pytest.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./scripts/setup.sh test
./build.sh
exec .venv/bin/python -m pytest -q "$@"
