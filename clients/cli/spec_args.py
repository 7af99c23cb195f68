"""The spec flags shared by `pruneserve prune` (local) and `pruneserve submit` (remote)."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from service.schemas import METHODS, PruneSpec, describe_errors


def add_spec_args(p: argparse.ArgumentParser) -> None:
    """Flags named like the JSON fields of PruneSpec."""
    p.add_argument("--model", required=True, help="hub id org/name, or a local model")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--sparsity", required=True, help='fraction such as 0.5, or "N:M" such as 2:4')
    p.add_argument("--calibration", default="wikitext2", help="wikitext2, c4, a .txt/.jsonl file")
    p.add_argument("--nsamples", type=int, default=128, help="calibration sequences (128)")
    p.add_argument("--seqlen", type=int, default=2048, help="calibration tokens per sequence")
    p.add_argument("--seed", type=int, default=0, help="calibration window seed (0)")
    p.add_argument("--eval", default=None, help="evaluate perplexity on this dataset")
    p.add_argument("--eval-seqlen", type=int, default=None, help="eval window (default: --seqlen)")
    p.add_argument("--eval-windows", type=int, default=None, help="at most this many windows")
    p.add_argument("--skip", action="append", default=[], help="module pattern to keep dense")
    p.add_argument("--magnitude-scope", choices=["matrix", "row"], default="matrix")
    p.add_argument("--blocksize", type=int, default=128, help="SparseGPT column block")
    p.add_argument("--percdamp", type=float, default=0.01, help="SparseGPT damping")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")


def spec_from_args(args: argparse.Namespace) -> PruneSpec:
    """Build the spec in one validation, so every bad flag is named with its full field path
    (e.g. calibration.nsamples); raises SystemExit with one clear line on bad input."""
    evaluation = None
    if args.eval:
        evaluation = {
            "dataset": args.eval,
            "seqlen": args.eval_seqlen or args.seqlen,
            "max_windows": args.eval_windows,
        }
    data = {
        "model": args.model,
        "revision": args.revision,
        "method": args.method,
        "sparsity": args.sparsity,
        "calibration": {
            "dataset": args.calibration,
            "nsamples": args.nsamples,
            "seqlen": args.seqlen,
            "seed": args.seed,
        },
        "evaluation": evaluation,
        "options": {
            "magnitude_scope": args.magnitude_scope,
            "blocksize": args.blocksize,
            "percdamp": args.percdamp,
        },
        "skip": args.skip,
        "device": args.device,
        "dtype": args.dtype,
    }
    try:
        return PruneSpec.model_validate(data)
    except ValidationError as exc:
        raise SystemExit(f"error: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line for all problems: 'field: message; ...'."""
    return "; ".join(f"{name or 'spec'}: {msg}" for name, msg in describe_errors(exc.errors()))
