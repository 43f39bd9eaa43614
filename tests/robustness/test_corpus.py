"""Replays every stored input in corpus/ (inputs that once broke the property, plus hand-picked nasty ones).

Each file is a JSON object: label, env (with world.py placeholders),
stdin_b64 (or stdin as a JSON document), and for found inputs what was
wrong ("found"). New failures from test_fuzz.py land here as found-*.json.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
from world import CORPUS, Case

FILES = sorted(glob.glob(os.path.join(CORPUS, "*.json")))


def _load(path: str) -> Case:
    with open(path) as f:
        return Case.from_json(json.load(f))


def test_corpus_is_not_empty():
    assert len(FILES) >= 10, FILES


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p) for p in FILES])
def test_inproc(world, path):
    world.exercise(_load(path), "inproc", save=False)


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p) for p in FILES])
def test_exe(world, need_exe, path):
    world.exercise(_load(path), "exe", save=False)
