#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) for building or testing nsveth:
#
#   scripts/setup.sh build   what ./build.sh needs: the [build] Debian packages of
#                            scripts/apt-packages.txt, a venv on Debian's
#                            /usr/bin/python3 with requirements.txt + requirements-build.txt
#   scripts/setup.sh demo    build, plus what demo.sh runs ([demo]: iproute2, host-local, ping)
#   scripts/setup.sh portable  build, plus what scripts/build-portable.sh needs ([portable])
#   scripts/setup.sh test    everything the test suite needs (all sections, and
#                            requirements-dev.txt: pytest, hypothesis, kubernetes-validate...)
#
# Without a mode it prepares for the tests. The venv is built on /usr/bin/python3
# because it starts much faster than a pyenv shim. Re-running does only what is
# missing: packages already installed are skipped, and each requirements file is
# installed again only when its content changed (a stamp per file in the venv).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

mode=${1:-test}
case "$mode" in
  build) sections="build" reqs="requirements.txt requirements-build.txt" ;;
  demo) sections="build demo" reqs="requirements.txt requirements-build.txt" ;;
  portable) sections="build portable" reqs="requirements.txt requirements-build.txt" ;;
  test) sections="build demo test portable" reqs="requirements.txt requirements-build.txt requirements-dev.txt" ;;
  *) echo "usage: $0 [build|demo|portable|test]" >&2; exit 2 ;;
esac

# The packages of the wanted sections; lines before any [section] count as [test].
mapfile -t wanted < <(awk -v want=" $sections " '
  /^[[:space:]]*(#|$)/ { next }
  /^\[[a-z]+\]$/ { section = substr($0, 2, length($0) - 2); next }
  { s = section == "" ? "test" : section; if (index(want, " " s " ")) print $1 }
' scripts/apt-packages.txt)
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with /usr/bin/python3" >&2
  /usr/bin/python3 -m venv .venv
fi
for req in $reqs; do
  stamp=".venv/.stamp-$req"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $req into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
  fi
done
