"""Fixtures of the engine tests: tiny saved models (one per architecture) and calibration text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.tiny_models import make_tiny_model

WORDS = [
    "the",
    "of",
    "a",
    "model",
    "layer",
    "sparse",
    "weight",
    "prune",
    "token",
    "input",
    "output",
    "norm",
    "mask",
    "row",
    "column",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """make(arch) -> directory of a saved tiny model, created once per session."""
    root = tmp_path_factory.mktemp("tiny_models")
    made: dict[str, Path] = {}

    def make(arch: str) -> Path:
        if arch not in made:
            made[arch] = make_tiny_model(arch, root / arch)
        return made[arch]

    return make


@pytest.fixture(scope="session")
def calib_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 20 KB of word salad: enough tokens for 4 windows of 32 byte-level tokens."""
    rng = random.Random(1234)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)]
    path = tmp_path_factory.mktemp("data") / "calib.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
