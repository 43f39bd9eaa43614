"""The portable bundle (scripts/build-portable.sh): dist/portable/nsveth/ and
the Debian 11 root it was built in (build/portable/root). scripts/test.sh builds
both before the suite runs; without them these tests fail, they do not skip."""

from __future__ import annotations

import os

import pytest
import support

BUNDLE = os.path.join(support.REPO, "dist", "portable", "nsveth")
ROOT = os.path.join(support.REPO, "build", "portable", "root")
MISSING = "is missing: run ./scripts/build-portable.sh first (scripts/test.sh does)"


@pytest.fixture(scope="session")
def bundle() -> str:
    if not os.access(os.path.join(BUNDLE, "nsveth"), os.X_OK):
        pytest.fail(f"{BUNDLE}/nsveth {MISSING}")
    return BUNDLE


@pytest.fixture(scope="session")
def root() -> str:
    if not os.path.isfile(os.path.join(ROOT, "etc", "debian_version")):
        pytest.fail(f"the Debian 11 root {ROOT} {MISSING}")
    return ROOT
