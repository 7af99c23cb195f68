"""The spec flags shared by `pruneserve prune` (local) and `pruneserve submit` (remote).

Named like the JSON fields of PruneSpec; each method's option flags are generated from its
options model (service/methods.py), with their descriptions and defaults.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any

from pydantic import ValidationError

from service.methods import METHODS
from service.schemas import CalibrationSpec, EvalSpec, PruneSpec, describe_errors

OPTION_DEST = "option__"  # argparse dest prefix of the generated method-option flags


def _default(model, name: str) -> Any:
    return model.model_fields[name].default


def add_spec_args(p: argparse.ArgumentParser) -> None:
    cal, ev = CalibrationSpec, EvalSpec
    p.add_argument("--model", required=True, help="hub id org/name, or a local model")
    p.add_argument("--revision", default=None, help="hub revision: branch, tag or commit")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--sparsity", required=True, help='fraction such as 0.5, or "N:M" such as 2:4')
    p.add_argument(
        "--calibration",
        default=_default(cal, "dataset"),
        help="calibration data: wikitext2, c4, a .txt/.jsonl file or upload:<id> "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--nsamples",
        type=int,
        default=_default(cal, "nsamples"),
        help="calibration sequences (default: %(default)s)",
    )
    p.add_argument(
        "--seqlen",
        type=int,
        default=_default(cal, "seqlen"),
        help="calibration tokens per sequence (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=_default(cal, "seed"),
        help="calibration window seed (default: %(default)s)",
    )
    p.add_argument(
        "--eval",
        default=None,
        help="evaluate perplexity on this dataset, e.g. wikitext2 (default: no)",
    )
    p.add_argument(
        "--eval-seqlen", type=int, default=None, help="evaluation window (default: --seqlen)"
    )
    p.add_argument(
        "--eval-windows",
        type=int,
        default=_default(ev, "max_windows"),
        help="at most this many windows (default: all)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        help="keep modules matching this fnmatch glob over full names dense, e.g. "
        "'*.mlp.down_proj' or '*.self_attn.*'; repeatable (default: none)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument(
        "--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (default: %(default)s)"
    )
    add_option_args(p.add_argument_group("method options (only the chosen method's apply)"))


def add_option_args(group) -> None:
    """One flag per option field of the registered methods (shared names share a flag)."""
    seen: dict[str, list[str]] = {}
    fields = {}
    for method, model in METHODS.items():
        for name, info in model.model_fields.items():
            seen.setdefault(name, []).append(f"{method}, default {info.default}")
            fields.setdefault(name, info)
    for name, info in fields.items():
        kind: dict[str, Any] = {}
        args = typing.get_args(info.annotation)
        if typing.get_origin(info.annotation) is typing.Literal:
            kind["choices"] = list(args)
        elif info.annotation is bool:
            kind["action"] = argparse.BooleanOptionalAction
        elif info.annotation in (int, float):
            kind["type"] = info.annotation
        about = info.description or name.replace("_", " ")
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=OPTION_DEST + name,
            metavar=name.upper() if "choices" not in kind and "action" not in kind else None,
            default=None,
            help=f"{about} ({'; '.join(seen[name])})",
            **kind,
        )


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
    options = {
        key.removeprefix(OPTION_DEST): value
        for key, value in vars(args).items()
        if key.startswith(OPTION_DEST) and value is not None
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
        "options": options,
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
