"""Fixtures for the end-to-end tests: cnitool, a private CNI environment, pod netns."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import cnienv  # noqa: E402
import support  # noqa: E402


@pytest.fixture(scope="session")
def cnitool() -> str:
    return support.build_cnitool()


@pytest.fixture
def env(cnitool: str) -> Iterator[cnienv.CniEnv]:
    e = cnienv.CniEnv.create()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def make_pod() -> Iterator[Callable[[], str]]:
    """Creates pod netns on demand (returns its path); all are deleted at teardown."""
    names: list[str] = []

    def make() -> str:
        names.append(support.netns_add("nsve2e-p-"))
        return support.netns_path(names[-1])

    try:
        yield make
    finally:
        for n in names:
            support.netns_delete(n)


@pytest.fixture(scope="session")
def busybox_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    ref = "localhost/nsveth-e2e-busybox:latest"
    path = tmp_path_factory.mktemp("image") / "busybox-oci.tar"
    return cnienv.build_busybox_image(path, ref), ref
