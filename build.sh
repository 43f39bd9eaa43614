#!/usr/bin/env bash
# Builds the self-contained nsveth executable with PyInstaller (the target host
# needs no Python).
#
#   ./build.sh            one-dir bundle: dist/nsveth/nsveth (+ dist/nsveth/_internal)
#   ./build.sh --onefile  also the single-file variant: dist/onefile/nsveth
#   ./build.sh --demo     build, then run demo.sh (ADD, CHECK, DEL in a throwaway netns)
#
# The one-dir bundle is the default because it starts faster: the single-file
# executable unpacks its whole archive to a temp dir on every start (the
# benchmark in bench/ shows both). scripts/install.sh installs the bundle into a
# CNI bin dir (the whole directory, plus a symlink); the inner executable alone
# does not run without its _internal/ directory.
#
# Start-up time is most of a pod operation's latency (a fresh process each
# time), so the spec (nsveth.spec, shared with scripts/build-portable.sh)
# trims what the bundle does at start:
# - no PyInstaller runtime hooks for inspect, pkgutil and multiprocessing:
#   they import or patch modules for uses nsveth never has (source lookup of
#   frozen code, pkgutil.iter_modules over the archive, frozen child
#   interpreters), and the inspect one costs start-up time on every run;
# - excluded modules nothing imports at run time (pyroute2's subsystems other
#   than the rtnetlink message classes, which its package __init__ would pull
#   in; sqlite3, ssl, asyncio...), and OpenSSL's hashlib backend (hashlib falls
#   back to its built-in sha256): a smaller archive to open, fewer shared
#   libraries to load, and less for the single-file variant to unpack.
# - ctypes is not imported by PyInstaller's bootstrap (the warm server's
#   client never needs it): scripts/pyi_defer_ctypes.py, which runs
#   before the bootstrap, and nsveth.main, which installs PyInstaller's ctypes
#   hooks itself before anything that may use ctypes;
# - one-dir only: modules as plain .pyc files instead of the PYZ archive,
#   which each import would otherwise search and decompress.
# Bytecode is compiled as is (not as with python -O): -O saves nothing
# measurable on the in-process path. The figures behind each item are in
# bench/README.md. Every one of these is checked by the test suite in exe mode
# (tests/), which runs the built executable.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
cd "$top"

onefile=0 demo=0
for arg in "$@"; do
  case "$arg" in
    --onefile) onefile=1 ;;
    --demo) demo=1 ;;
    *) echo "usage: $0 [--onefile] [--demo]" >&2; exit 2 ;;
  esac
done

# Only what building needs (scripts/setup.sh build); the test command installs
# the runtimes, Go and the test packages.
./scripts/setup.sh "$([ "$demo" = 1 ] && echo demo || echo build)"
mkdir -p build

# A fresh id per build: the validation cache (nsveth/validation_cache.py) trusts an
# entry only from the very build that wrote it.
mkdir -p build/id
printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > build/id/build_id

pyi() {  # $1: dist dir, $2: 1 for the single-file variant
  NSVETH_TOP="$top" NSVETH_ONEFILE="$2" NSVETH_BUILD_ID_FILE="$top/build/id/build_id" .venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
    --distpath "$1" --workpath "build/work-$2" nsveth.spec
}

pyi dist 0
echo "built dist/nsveth/nsveth" >&2
if [ "$onefile" = 1 ]; then
  pyi dist/onefile 1
  echo "built dist/onefile/nsveth" >&2
fi
if [ "$demo" = 1 ]; then
  ./demo.sh
fi
