"""pyproject.toml declares the package; requirements*.txt pin what CI installs.

The two must agree: every declared dependency is pinned, every pin satisfies the
declared range, and nothing is pinned that the project does not declare. A
wheel built from pyproject.toml carries the schema (package data) and an
`nsveth` entry point that works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from nsveth.errors import Code
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TOP = Path(__file__).resolve().parents[2]


def _project() -> dict:
    return tomllib.loads((TOP / "pyproject.toml").read_text())["project"]


def _pins(*names: str) -> dict[str, str]:
    pins = {}
    for name in names:
        for line in (TOP / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                req = Requirement(line)
                (spec,) = req.specifier
                assert spec.operator == "==", f"{name}: {line} is not an exact pin"
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def _declared(reqs: list[str]) -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}


def test_runtime_dependencies_are_pinned_within_declared_ranges():
    declared = _declared(_project()["dependencies"])
    pins = _pins("requirements.txt")
    assert set(declared) == set(pins) == {"pyroute2", "jsonschema"}
    for name, req in declared.items():
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {req}"


def test_pyroute2_is_declared_exact_because_netlink_import_depends_on_its_layout():
    (spec,) = _declared(_project()["dependencies"])["pyroute2"].specifier
    assert spec.operator == "=="
    assert spec.version == _pins("requirements.txt")["pyroute2"]


def test_dev_pins_match_the_optional_dependency_groups():
    extras = _project()["optional-dependencies"]
    declared = {}
    for group in extras.values():
        declared.update(_declared(group))
    pins = _pins("requirements-build.txt", "requirements-dev.txt")
    assert set(declared) == set(pins)
    for name, req in declared.items():
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} outside {req}"


def test_build_pins_are_only_what_building_needs():
    # ./build.sh installs requirements.txt + requirements-build.txt, nothing of the tests'.
    build = _declared(_project()["optional-dependencies"]["build"])
    assert set(_pins("requirements-build.txt")) == set(build) == {"pyinstaller"}
    assert not set(_pins("requirements-dev.txt")) & set(build)


def test_setup_modes_install_only_their_sections():
    script = r'''
        set -e
        # The section filter of scripts/setup.sh, run alone.
        eval "$(sed -n '/^mapfile -t wanted/,/^. scripts\/apt-packages.txt)$/p' scripts/setup.sh)"
        printf '%s\n' "${wanted[@]}"
    '''
    def packages(sections: str) -> set[str]:
        out = subprocess.run(["bash", "-c", script], cwd=TOP, env={"sections": sections, "PATH": os.environ["PATH"]},
                             capture_output=True, text=True, check=True).stdout
        return set(out.split())

    build, portable, test = packages("build"), packages("build portable"), packages("build demo test portable")
    assert {"python3-venv", "binutils"} <= build
    assert not build & {"golang-go", "containerd", "podman", "runc", "debootstrap"}
    assert {"debootstrap", "zstd", "dpkg-dev"} <= portable and not portable & {"golang-go", "containerd", "podman"}
    assert {"golang-go", "containerd", "podman", "runc", "containernetworking-plugins", "debootstrap"} <= test


def test_installed_versions_are_the_pins():
    from importlib.metadata import version

    for name, pinned in _pins("requirements.txt", "requirements-build.txt", "requirements-dev.txt").items():
        assert version(name) == pinned, name


def test_version_attribute_is_the_package_version():
    import nsveth

    assert tomllib.loads((TOP / "pyproject.toml").read_text())["tool"]["setuptools"][
        "dynamic"
    ]["version"] == {"attr": "nsveth.__version__"}
    assert nsveth.__version__.count(".") == 2


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the tree (the build writes egg-info)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(TOP / "pyproject.toml", src)
    shutil.copy(TOP / "README.md", src)
    shutil.copytree(TOP / "plugin", src / "plugin",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "--disable-pip-version-check", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (whl,) = out.glob("nsveth-*.whl")
    return whl


def test_wheel_holds_every_module_and_the_schema(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"nsveth/{p.name}" for p in (TOP / "plugin" / "nsveth").glob("*.py")}
    assert modules <= names
    assert "nsveth/schema.json" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "nsveth = nsveth.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_entry_point_runs_the_plugin(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
         "install", "-q", "--no-deps", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    # Dependencies come from this venv's site-packages (already the pins),
    # the plugin itself only from the installed wheel.
    site = Path(subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    exe = venv / "bin" / "nsveth"
    env = {"PATH": os.environ["PATH"]}

    about = subprocess.run([str(exe)], capture_output=True, text=True, env=env)
    assert about.returncode == 0 and about.stdout == ""
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in about.stderr

    env.update(CNI_COMMAND="ADD", CNI_CONTAINERID="pkgtest", CNI_NETNS="/nonexistent",
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    conf = {"cniVersion": "1.0.0", "name": "pkg", "type": "nsveth", "mtu": "1500",
            "runtimeDir": str(tmp_path / "run"), "ipam": {"type": "host-local"}}
    bad = subprocess.run([str(exe)], input=json.dumps(conf), capture_output=True,
                         text=True, env=env)
    err = json.loads(bad.stdout)
    # The packaged schema.json did the validation: code 7, naming the field.
    assert bad.returncode != 0 and err["code"] == Code.INVALID_CONFIG and "mtu" in err["msg"], err
    loaded = subprocess.check_output(
        [str(venv / "bin" / "python"), "-c", "import nsveth.schema as s; print(s.__file__)"],
        text=True, env=env)
    assert loaded.startswith(str(venv)), loaded
