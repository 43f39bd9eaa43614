#!/usr/bin/env bash
# A real ADD, CHECK and DEL with the built executable: a throwaway "host" netns
# (so nothing touches this machine's network), a pod netns, Debian's host-local
# for IPAM. Prints the result, the pod's addresses and routes, pings the
# gateway from the pod, then removes everything, even on failure.
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
exe="$top/dist/nsveth/nsveth"
[ -x "$exe" ] || { echo "demo: $exe is missing; run ./build.sh first" >&2; exit 1; }

id=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
host="nsvdemo-host-$id" pod="nsvdemo-pod-$id" tmp=$(mktemp -d)
cleanup() { ip netns del "$pod" 2>/dev/null || true; ip netns del "$host" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

ip netns add "$host"
ip netns add "$pod"
# The nsveth entry of the ptp example, as a runtime passes it, with IPAM and
# runtime state kept in the temp dir.
python3 - "$top/conf-examples/ptp.conflist" "$tmp" > "$tmp/net.conf" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
conf = {"cniVersion": doc["cniVersion"], "name": doc["name"], **doc["plugins"][0]}
conf["ipam"]["dataDir"] = sys.argv[2] + "/ipam"
conf["runtimeDir"] = sys.argv[2] + "/run"
print(json.dumps(conf))
PY

cni() {  # cni COMMAND < config
  CNI_COMMAND=$1 CNI_CONTAINERID="demo-$id" CNI_NETNS="/run/netns/$pod" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni ip netns exec "$host" "$exe"
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "ADD"
cni ADD < "$tmp/net.conf" | tee "$tmp/result.json"
step "pod: ip addr"
ip -n "$pod" addr show eth0
step "pod: ip route"
ip -n "$pod" route
gw=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ips"][0]["gateway"])' "$tmp/result.json")
step "pod: ping the gateway $gw"
ip netns exec "$pod" ping -c 2 -W 2 "$gw"
python3 - "$tmp/net.conf" "$tmp/result.json" > "$tmp/prev.conf" <<'PY'
import json, sys
conf = json.load(open(sys.argv[1])); conf["prevResult"] = json.load(open(sys.argv[2])); print(json.dumps(conf))
PY
step "CHECK"
cni CHECK < "$tmp/prev.conf" && echo "CHECK passed"
step "DEL"
cni DEL < "$tmp/prev.conf" && echo "DEL done"
step "after DEL: host links, pod links"
ip -n "$host" -br link
ip -n "$pod" -br link
