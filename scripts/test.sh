#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs the
# Debian and Python packages, builds the executable, runs every suite
# (unit, integration against the real kernel, robustness, end-to-end with real
# clients). Extra arguments go to pytest.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./build.sh
exec .venv/bin/python -m pytest -q "$@"
