#!/usr/bin/env bash
# Installs the built nsveth bundle into a CNI bin dir on this host (as root),
# with the same installer and the same layout as the Kubernetes DaemonSet
# (deploy/installer/nsveth_install): one directory per version under
# <bindir>/nsveth.d/, switched by renaming the <bindir>/nsveth symlink.
#
#   scripts/install.sh install   [options]   install dist/nsveth (or upgrade to it); creates the bin dir
#   scripts/install.sh rollback  [options]   back to the previous version (again: forward)
#   scripts/install.sh status    [options]   what is installed (JSON); exit 1 when not installed
#   scripts/install.sh uninstall [options]   remove what install put there, nothing else
#
# Options (any option of `python3 -m nsveth_install --help` is accepted):
#   --cni-bin-dir DIR    default /opt/cni/bin (Debian's own plugins are in /usr/lib/cni)
#   --bundle DIR         default dist/nsveth (./build.sh)
#   --allowlist-src FILE the sysctl allowlist to install at /etc/cni/nsveth/allowlist.conf,
#                        default conf-examples/allowlist-k8s-safe.txt (the Kubernetes safe set)
#   --allowlist-dest ''  do not install or manage an allowlist
#   --force              replace (or on uninstall: remove) files the installer did not write
#
# The network configs are yours to copy (conf-examples/*.conflist into the
# runtime's config dir); this installs the plugin and its allowlist only.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

action=${1:-}
case "$action" in
  install) flag=() ;;
  rollback) flag=(--rollback) ;;
  status) flag=(--status) ;;
  uninstall) flag=(--uninstall) ;;
  *) sed -n '2,23s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
shift

# The installer is standard-library Python; Debian's interpreter runs it, no venv needed.
PYTHONPATH="$top/deploy/installer" exec /usr/bin/python3 -m nsveth_install --once "${flag[@]}" \
  --no-conflist --ready-file '' \
  --bundle "$top/dist/nsveth" \
  --cni-bin-dir /opt/cni/bin \
  --allowlist-src "$top/conf-examples/allowlist-k8s-safe.txt" \
  --allowlist-dest /etc/cni/nsveth/allowlist.conf \
  "$@"
