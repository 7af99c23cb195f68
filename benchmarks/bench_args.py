"""The arguments every model benchmark takes: the model and the data directory."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with `--model` (required) and
    `--data-dir` (default: the `shared/data` beside the checkout)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    return ap
