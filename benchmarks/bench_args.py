"""The arguments every model benchmark takes (the model and the data directory), and the
`pruneserve prune` command line the benchmarks start from."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with `--model` (required) and
    `--data-dir` (default: the `shared/data` beside the checkout)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    return ap


def prune_command(model, method: str, sparsity: str, nsamples=32, seqlen=512) -> list[str]:
    """`pruneserve prune` of `model` in a fresh interpreter: fp32 on the CPU, calibration
    `nsamples` x `seqlen` windows of wikitext2 (seed 0); the caller adds the rest."""
    return [
        sys.executable,
        "-m",
        "clients.cli.main",
        "prune",
        "--model",
        str(model),
        "--method",
        method,
        "--sparsity",
        sparsity,
        "--calibration",
        "wikitext2",
        "--nsamples",
        str(nsamples),
        "--seqlen",
        str(seqlen),
        "--seed",
        "0",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
