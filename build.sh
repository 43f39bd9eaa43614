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
# benchmark in bench/ shows both). Install the bundle by copying the directory
# and symlinking its `nsveth` into the CNI bin dir; the inner executable alone
# does not run without its _internal/ directory.
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

./scripts/setup.sh

pyi() {
  .venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
    --name nsveth --paths "$top/plugin" \
    --add-data "$top/plugin/nsveth/schema.json:nsveth" \
    --workpath build --specpath build "$@" "$top/plugin/nsveth/__main__.py"
}

pyi --onedir --distpath dist
echo "built dist/nsveth/nsveth" >&2
if [ "$onefile" = 1 ]; then
  pyi --onefile --distpath dist/onefile
  echo "built dist/onefile/nsveth" >&2
fi
if [ "$demo" = 1 ]; then
  ./demo.sh
fi
