"""Every ELF file in the portable bundle needs glibc <= 2.31 and nothing from
the node but glibc itself.

The versions come from each file's version-needs section (.gnu.version_r,
`objdump -p` "Version References"): what the dynamic loader checks before it
runs anything, for the bootloader, libpython, extension modules and the
shared libraries the bundle carries alike.
"""

from __future__ import annotations

import os
import re

import pytest
import support

MAX_GLIBC = (2, 31)
# What a minimal node provides: glibc's own libraries and the dynamic loader.
GLIBC_LIBS = {
    "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    "ld-linux-x86-64.so.2", "libcrypt.so.1", "libresolv.so.2",
}


def elf_files(top: str) -> list[str]:
    found = []
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.isfile(path):
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        found.append(path)
    return sorted(found)


def dynamic_info(path: str) -> tuple[list[str], set[tuple[int, ...]]]:
    """(NEEDED libraries, GLIBC_x.y versions required) of one ELF file."""
    out = support.sh("objdump", "-p", path).stdout
    needed = re.findall(r"^\s+NEEDED\s+(\S+)$", out, re.M)
    refs = out.partition("Version References:")[2]
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"\sGLIBC_([0-9.]+)$", refs, re.M)}
    return needed, versions


def max_glibc(top: str) -> tuple[tuple[int, ...], str]:
    best: tuple[tuple[int, ...], str] = ((0,), "")
    for path in elf_files(top):
        for v in dynamic_info(path)[1]:
            best = max(best, (v, os.path.relpath(path, top)))
    return best


def test_every_elf_file_needs_glibc_2_31_at_most(bundle: str) -> None:
    files = elf_files(bundle)
    # The check must see the whole bundle: bootloader, libpython, extensions.
    names = {os.path.basename(p) for p in files}
    assert "nsveth" in names and "libpython3.11.so.1.0" in names, names
    assert any(n.endswith(".cpython-311-x86_64-linux-gnu.so") for n in names), names
    version, where = max_glibc(bundle)
    assert version <= MAX_GLIBC, f"{where} needs GLIBC_{'.'.join(map(str, version))}"


def test_only_glibc_comes_from_the_node(bundle: str) -> None:
    files = elf_files(bundle)
    shipped = {os.path.basename(p) for p in files}
    for path in files:
        for lib in dynamic_info(path)[0]:
            assert lib in shipped or lib in GLIBC_LIBS, f"{os.path.relpath(path, bundle)} needs {lib}, not in the bundle"


def test_the_check_sees_a_newer_glibc_in_the_local_bundle() -> None:
    """The same check on ./build.sh's bundle (built on Debian 12, glibc 2.36) finds more than 2.31."""
    local = os.path.join(support.REPO, "dist", "nsveth")
    if not os.path.isdir(local):
        pytest.skip("dist/nsveth is not built (./build.sh)")
    assert max_glibc(local)[0] > MAX_GLIBC
