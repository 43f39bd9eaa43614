#!/usr/bin/env bash
# Builds tools/cnitool/bin/cnitool with Debian's Go toolchain in GOPATH mode,
# offline, against the libcni sources of golang-github-appc-cni-dev. Rebuilds
# only when the sources, this script or the toolchain/library versions changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin="$here/bin"
out="$bin/cnitool"
stamp="$bin/.stamp"
gocode=/usr/share/gocode

for need in /usr/bin/go "$gocode/src/github.com/containernetworking/cni/libcni"; do
  if [ ! -e "$need" ]; then
    echo "cnitool/build.sh: $need missing (install golang-go and golang-github-appc-cni-dev)" >&2
    exit 1
  fi
done

want=$( {
  cat "$here"/*.go "$here/build.sh"
  /usr/bin/go version
  dpkg-query -W -f='${Version}\n' golang-github-appc-cni-dev 2>/dev/null || true
} | sha256sum | cut -d' ' -f1)

if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

mkdir -p "$bin"
export GO111MODULE=off GOPATH="$bin/gopath:$gocode" GOCACHE="$bin/gocache" \
  GOPROXY=off GOFLAGS= CGO_ENABLED=0
(cd "$here" && /usr/bin/go build -trimpath -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
echo "$want" > "$stamp"
echo "cnitool/build.sh: built $out" >&2
