"""`pruneserve prune`: run the engine locally, no server needed, with a progress bar per layer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clients.cli.spec_args import add_spec_args, spec_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model locally (no server)")
    add_spec_args(p)
    p.add_argument("--output", required=True, type=Path, help="new directory for the checkpoint")
    p.add_argument("--data-dir", type=Path, default=None, help="where wikitext2/c4 files live")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_prune)


def default_data_dir() -> Path:
    """PRUNESERVE_DATA_DIR, else ./data, else a ../shared/data beside the checkout."""
    import os

    if os.environ.get("PRUNESERVE_DATA_DIR"):
        return Path(os.environ["PRUNESERVE_DATA_DIR"])
    for cand in (Path("data"), Path(__file__).resolve().parents[3] / "shared" / "data"):
        if cand.is_dir():
            return cand
    return Path("data")


def cmd_prune(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    from clients.cli.progress_bar import BarReporter
    from worker.engine.errors import EngineError
    from worker.engine.run import run

    try:
        with BarReporter() as reporter:
            report = run(
                spec, args.output, reporter=reporter, data_dir=args.data_dir or default_data_dir()
            )
    except EngineError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    s = report.summary()
    print(
        f"pruned {report.architecture} ({report.n_layers} layers) "
        f"with {spec.method} {spec.sparsity}"
    )
    print(f"  sparsity {s.sparsity:.4f}" + (f", N:M ok: {s.nm_ok}" if s.nm_ok is not None else ""))
    if s.perplexity_dense is not None:
        print(f"  perplexity {s.perplexity_dense:.2f} -> {s.perplexity_pruned:.2f}")
    print(f"  time {s.total_s:.1f}s {json.dumps(s.stages_s)}; peak RSS {s.peak_rss_mb:.0f} MB")
    for w in s.warnings:
        print(f"  warning: {w}")
    print(f"  saved to {args.output}")
    return 0
