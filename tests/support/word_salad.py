"""The word list of the tests' calibration texts, and the text most of them use."""

from __future__ import annotations

import random
from pathlib import Path

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


def write_word_salad(path: Path) -> Path:
    """About 20 KB of word salad: enough tokens for 4 windows of 32 byte-level tokens."""
    rng = random.Random(1234)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)]
    path.write_text("\n".join(lines) + "\n")
    return path
