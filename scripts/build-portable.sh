#!/usr/bin/env bash
# Builds the portable bundle, dist/portable/nsveth/ (as root):
#
#   ./scripts/build-portable.sh
#
# Same spec (nsveth.spec) and the same pinned requirements as ./build.sh, but
# built inside a Debian 11 (bullseye, glibc 2.31) root on a CPython 3.11 built
# there from Debian 12's python3.11 source package, so that every ELF file in
# the bundle needs glibc <= 2.31 (tests/portable checks it) and the bundle runs
# on every node OS with glibc 2.31 or newer (deploy/README.md lists them).
#
# Stages; the first two are slow and cached outside the repository in
# $NSVETH_PORTABLE_CACHE (default /var/cache/nsveth-portable), each under a
# hash of its recipe (the stage's function text below, its inputs and
# versions), so an edit of a stage or a new Debian version rebuilds it and
# anything else reuses it:
#   1. root-<key>.tar.zst: `debootstrap --variant=minbase bullseye` plus the
#      build dependencies, upgraded from bullseye-security (~1-2 min);
#   2. python-<key>.tar.zst: bookworm's python3.11 source package (upstream
#      tarball + Debian's whole patch series, applied by dpkg-source), built in
#      the root with --enable-shared into /opt/nsveth-python (~10 min here);
#      the key holds the exact Debian version, so a security update of the
#      source package is a rebuild;
#   3. not cached (seconds): a venv on that Python in the root, the pinned
#      runtime requirements and PyInstaller installed offline from wheels that
#      pip downloads on the host (manylinux wheels for glibc <= 2.31), and
#      PyInstaller run on nsveth.spec.
# The root stays in build/portable/root for tests/portable (the demo runs the
# bundle inside it). Every chroot command runs with a clean environment
# (env -i: the host's PIP_* settings would leak in); /proc and /dev are
# bind-mounted only while the script runs and unmounted on any exit.
#
# Environment: NSVETH_PORTABLE_CACHE (cache dir), NSVETH_DEBIAN_MIRROR
# (default http://deb.debian.org/debian), NSVETH_DEBIAN_SECURITY_MIRROR
# (default http://deb.debian.org/debian-security).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

[ "$(id -u)" = 0 ] || { echo "build-portable: needs root (debootstrap, chroot)" >&2; exit 1; }

cache=${NSVETH_PORTABLE_CACHE:-/var/cache/nsveth-portable}
mirror=${NSVETH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${NSVETH_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bullseye
prefix=/opt/nsveth-python
work=$top/build/portable
root=$work/root
# What the root needs to build CPython: the modules nsveth's bundle carries
# (ctypes/libffi, zlib, bz2, lzma, uuid, expat, decimal's bundled libmpdec) and
# ssl/hashlib so the interpreter is complete (the spec leaves ssl out); and
# Debian 11's CNI plugins, whose host-local (CNI <= 0.4.0) tests/portable's
# demo uses inside the root (Debian 12's needs glibc 2.34).
root_packages="build-essential pkg-config libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev uuid-dev libexpat1-dev containernetworking-plugins"

./scripts/setup.sh portable
for tool in debootstrap zstd dpkg-source; do
  command -v "$tool" >/dev/null || { echo "build-portable: $tool is missing (scripts/apt-packages.txt)" >&2; exit 1; }
done
mkdir -p "$cache" "$work"

mounted=()
unmount_all() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
  mounted=()
}
trap unmount_all EXIT
mount_root() {  # $1: the root
  mount -t proc proc "$1/proc"; mounted+=("$1/proc")
  mount --bind /dev "$1/dev"; mounted+=("$1/dev")
}
in_root() {  # $1: the root, then a command run there with a clean environment
  local r=$1; shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    chroot "$r" "$@"
}
wipe() {  # rm -rf that never follows a mount left under the root (its /dev is the host's)
  local d
  for d in "$@"; do
    if awk -v d="$(realpath -m "$d")" '$2 == d || index($2, d "/") == 1 {found=1} END {exit !found}' /proc/mounts; then
      echo "build-portable: refusing to remove $d: something is mounted under it" >&2; exit 1
    fi
    rm -rf --one-file-system "$d"
  done
}
hash_of() { sha256sum | cut -c1-16; }
stamp() { date +%s; }
took() { echo "build-portable: $1 took $(($(stamp) - $2)) s" >&2; }
save() {  # $1: dir, $2: cache file; written under a temporary name, then renamed
  tar -C "$1" --numeric-owner -cf - . | zstd -q -T0 -3 -o "$2.tmp.$$" && mv -f "$2.tmp.$$" "$2"
}
restore() {  # $1: cache file, $2: dir
  zstd -q -dc "$1" | tar -C "$2" --numeric-owner -xf -
}

# --- stage 1: the bullseye root ---------------------------------------------
make_root() {  # $1: target dir
  debootstrap --variant=minbase --include="${root_packages// /,}" "$suite" "$1" "$mirror" >&2
  cat > "$1/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
  mount_root "$1"
  in_root "$1" sh -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get -y -q dist-upgrade && apt-get clean' >&2
  unmount_all
  rm -rf "$1"/var/lib/apt/lists/*
}
root_key=$(printf '%s\n' "$suite" "$mirror" "$root_packages" "$(declare -f make_root)" | hash_of)
root_tar=$cache/root-$root_key.tar.zst
if [ ! -f "$root_tar" ]; then
  t=$(stamp)
  wipe "$work/root.new"
  make_root "$work/root.new"
  save "$work/root.new" "$root_tar"
  wipe "$work/root.new"
  took "bullseye root (debootstrap + upgrade, cached as $root_tar)" "$t"
fi
t=$(stamp)
wipe "$root"
mkdir -p "$root"
restore "$root_tar" "$root"
took "restoring the root" "$t"

# --- stage 2: CPython 3.11 from bookworm's python3.11 source package ---------
# apt with a private source list and state dir: the host's apt setup is not touched.
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial"
cat > "$apt_dir/sources.list" <<EOF
deb-src $mirror bookworm main
deb-src $mirror bookworm-updates main
deb-src $security_mirror bookworm-security main
EOF
apt_opts=(-o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$apt_dir/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -q update >&2

build_python() {  # $1: the root (holding the extracted source in /build/python-src)
  mount_root "$1"
  in_root "$1" sh -ec "
    cd /build/python-src
    # pyexpat and _elementtree built into libpython, as Debian builds them:
    # Debian's CVE-2026-4224.patch makes pyexpat.c include an internal header
    # that only a built-in module may use.
    printf '%s\\n' 'pyexpat pyexpat.c -lexpat' '_elementtree _elementtree.c' > Modules/Setup.local
    # --enable-optimizations: profile-guided, as Debian builds its python3.11
    # (the profile run is CPython's --pgo test selection; a few minutes).
    ./configure -q --prefix=$prefix --enable-shared --enable-optimizations --enable-ipv6 --with-computed-gotos \
      --with-system-expat --with-system-ffi --without-ensurepip LDFLAGS=-Wl,-rpath,$prefix/lib
    make -s -j$(nproc)
    make -s install
    # What a bundle never uses: the test suite, idle, tkinter, static archive,
    # debug info (two thirds of libpython's size).
    rm -rf $prefix/lib/python3.11/test $prefix/lib/python3.11/idlelib $prefix/lib/python3.11/tkinter \
      $prefix/lib/python3.11/config-3.11-x86_64-linux-gnu/*.a
    strip --strip-debug $prefix/bin/python3.11 $prefix/lib/libpython3.11.so.1.0 $prefix/lib/python3.11/lib-dynload/*.so
  " >&2
  unmount_all
}

# The newest version whose files the mirror serves (a security update whose
# source is not on the mirror yet falls back to the previous one, with a warning).
mapfile -t versions < <(apt-cache "${apt_opts[@]}" madison python3.11 | awk -F'|' '/Sources/ {gsub(/ /, "", $2); print $2}' | sort -Vru)
[ ${#versions[@]} -gt 0 ] || { echo "build-portable: no python3.11 source package in bookworm" >&2; exit 1; }
python_tar=
for v in "${versions[@]}"; do
  key=$(printf '%s\n' "$root_key" "$v" "$prefix" "$(declare -f build_python)" | hash_of)
  if [ -f "$cache/python-$key.tar.zst" ]; then
    python_tar=$cache/python-$key.tar.zst python_version=$v
    break
  fi
  rm -rf "$work/src" && mkdir -p "$work/src"
  if ! (cd "$work/src" && apt-get "${apt_opts[@]}" -q source --download-only "python3.11=$v" >&2); then
    echo "build-portable: WARNING: python3.11 $v is listed but its source is not on the mirror; trying an older version" >&2
    continue
  fi
  t=$(stamp)
  wipe "$root/build" && mkdir -p "$root/build"
  # dpkg-source applies Debian's whole patch series (debian/patches/series).
  dpkg-source -q -x "$work/src/python3.11_$v.dsc" "$root/build/python-src" >&2
  build_python "$root"
  wipe "$root/build" "$work/python.new"
  mkdir -p "$work/python.new"
  cp -a "$root$prefix/." "$work/python.new/"
  save "$work/python.new" "$cache/python-$key.tar.zst"
  wipe "$work/python.new" "$root$prefix"
  took "CPython $v (configure, make, install; cached as $cache/python-$key.tar.zst)" "$t"
  python_tar=$cache/python-$key.tar.zst python_version=$v
  break
done
[ -n "$python_tar" ] || { echo "build-portable: no python3.11 source could be fetched" >&2; exit 1; }
# Older recipes' results are dead weight (the root alone is ~170 MB).
find "$cache" -maxdepth 1 -name '*.tar.zst' ! -path "$root_tar" ! -path "$python_tar" -delete
t=$(stamp)
mkdir -p "$root$prefix"
restore "$python_tar" "$root$prefix"
echo "$python_version" > "$root$prefix/DEBIAN_SOURCE_VERSION"
took "restoring CPython $python_version" "$t"

# --- stage 3: venv, wheels, PyInstaller --------------------------------------
t=$(stamp)
src=$root/build/src
mkdir -p "$src/build/id" "$root/build/wheels"
mkdir -p "$src/scripts"
cp -a plugin nsveth.spec requirements.txt "$src/"
cp -a scripts/pyi_defer_ctypes.py "$src/scripts/"  # nsveth.spec runs it before PyInstaller's bootstrap
find "$src/plugin" -name __pycache__ -prune -exec rm -rf {} +
# A fresh id per build, as build.sh does (the validation cache trusts only its own build).
printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$src/build/id/build_id"
pyinstaller_pin=$(grep -E '^pyinstaller==' requirements-build.txt)
# Binary wheels only, for CPython 3.11 on glibc <= 2.31, downloaded by the
# host's pip (its index settings) and installed offline in the root. This pip
# does not expand a manylinux tag to the older ones, so every tag a glibc 2.31
# system accepts is listed.
platforms=(--platform manylinux1_x86_64 --platform manylinux2010_x86_64 --platform manylinux2014_x86_64)
for minor in $(seq 5 31); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
.venv/bin/pip download -q --disable-pip-version-check --only-binary=:all: \
  "${platforms[@]}" --python-version 3.11 --implementation cp \
  -d "$root/build/wheels" -r requirements.txt "$pyinstaller_pin" pip >&2
mount_root "$root"
in_root "$root" "$prefix/bin/python3.11" -m venv --without-pip /build/venv
pip_whl=$(cd "$root/build/wheels" && ls pip-*.whl)
in_root "$root" /build/venv/bin/python "/build/wheels/$pip_whl/pip" install -q --no-index --find-links /build/wheels \
  --disable-pip-version-check pip -r /build/src/requirements.txt "$pyinstaller_pin" >&2
in_root "$root" /usr/bin/env NSVETH_TOP=/build/src NSVETH_ONEFILE=0 NSVETH_BUILD_ID_FILE=/build/src/build/id/build_id \
  /build/venv/bin/pyinstaller --noconfirm --clean --log-level WARN \
  --distpath /build/dist --workpath /build/work /build/src/nsveth.spec >&2
unmount_all
rm -rf dist/portable
mkdir -p dist/portable
cp -a "$root/build/dist/nsveth" dist/portable/
took "bundle (venv, wheels, PyInstaller)" "$t"
echo "built dist/portable/nsveth/nsveth (CPython $python_version from Debian's python3.11 source, built on Debian $suite)" >&2
