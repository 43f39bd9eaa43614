"""The `node` fixture: a fake node for the installer (see deploy_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import Node, make_node


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return make_node(tmp_path)
