"""`pruneserve prune`: run the engine locally, no server needed, with one progress display.

Inputs are checked (preflight.py) before torch is imported; errors end as exits.py says.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from clients.cli.dry_run import add_plan_args
from clients.cli.exits import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    USAGE,
    CliError,
    describe,
    validated_spec,
)
from clients.cli.spec_args import add_spec_args

CHECKOUT = Path(__file__).resolve().parents[2]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune a model locally (no server)")
    add_spec_args(p)
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="new directory for the checkpoint (required unless --dry-run)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where wikitext2/c4 files live (default: PRUNESERVE_DATA_DIR, else ./data, "
        "else a ../shared/data beside the checkout)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    add_plan_args(p)
    p.set_defaults(func=cmd_prune)


def data_dir_for(flag: Path | None) -> Path:
    """--data-dir, else Settings.DATA_DIR (the one default, ./data, or PRUNESERVE_DATA_DIR) when
    set or present, else a ../shared/data beside the checkout when there is one."""
    if flag is not None:
        return flag
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        configured = Settings().DATA_DIR
    except ValidationError as exc:
        raise CliError(USAGE, "SettingsError", describe(exc)) from None
    if os.environ.get("PRUNESERVE_DATA_DIR") or configured.is_dir():
        return configured
    beside = CHECKOUT.parent / "shared" / "data"
    return beside if beside.is_dir() else configured


def cmd_prune(args: argparse.Namespace) -> int:
    from clients.cli.preflight import check_inputs
    from worker.engine.errors import Cancelled, EngineError, SpecError

    spec = validated_spec(args)
    if args.dry_run:
        from clients.cli.dry_run import cmd_dry_run

        return cmd_dry_run(args, spec)
    if args.plan_for is not None:
        raise CliError(USAGE, "UsageError", "--plan-for plans only: add --dry-run")
    if args.output is None:
        raise CliError(USAGE, "UsageError", "--output is required (except with --dry-run)")
    data_dir = data_dir_for(args.data_dir)
    try:
        check_inputs(spec, args.output, data_dir, data_dir_given=args.data_dir is not None)
    except EngineError as exc:
        raise CliError(USAGE, type(exc).__name__, str(exc)) from None
    try:
        report = _run(spec, args.output, data_dir)
    except KeyboardInterrupt:
        print(interrupted_message(args.output), file=sys.stderr)
        return INTERRUPTED
    except Cancelled as exc:
        raise CliError(CANCELLED, type(exc).__name__, str(exc)) from exc
    except EngineError as exc:  # a SpecError is bad input found late; the rest: the run failed
        code = USAGE if isinstance(exc, SpecError) else FAILED
        raise CliError(code, type(exc).__name__, str(exc)) from exc
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        _print_summary(report, args.output)
    return 0


def interrupted_message(output: Path) -> str:
    """What Ctrl-C left: the resume checkpoint (and partial output), how to go on or discard."""
    from service.schemas import partial_dir, resume_dir

    resume, partial = resume_dir(output), partial_dir(output)
    if not resume.is_dir():
        return "interrupted"
    left = [p for p in (resume, partial) if p.is_dir()]
    size = sum(f.stat().st_size for p in left for f in p.rglob("*") if f.is_file())
    paths = " ".join(shlex.quote(str(p)) for p in left)
    return (
        f"interrupted: the work so far is kept in {resume}/ ({size / 2**20:,.0f} MiB); run the "
        f"same command again to resume from it, or discard it: rm -r {paths}"
    )


def _run(spec, output: Path, data_dir: Path):
    from clients.cli.progress_bar import BarReporter, silence_other_bars

    silence_other_bars()  # before transformers is imported: tqdm reads its switch then
    from worker.engine.run import run

    with BarReporter() as reporter:
        return run(spec, output, reporter=reporter, data_dir=data_dir)


def _print_summary(report, output: Path) -> None:
    from clients.cli.report_view import print_report

    print_report(report)
    print(f"saved to {output}")  # whole, never folded by the table: scripts may read it
