"""Fixtures of the engine tests: tiny saved models (one per architecture) and calibration text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_models import make_tiny_model
from tests.support.word_salad import write_word_salad


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
    return write_word_salad(tmp_path_factory.mktemp("data") / "calib.txt")
