"""`pruneserve report DIR_OR_JOB`: print a finished run's summary again, from a local output
directory or a job on the service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clients.cli.exits import REQUEST_FAILED, USAGE, CliError
from service.schemas import REPORT_FILE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print a finished run's summary (local dir or job id)")
    p.add_argument("target", metavar="DIR_OR_JOB", help="an output directory, or a job id")
    p.add_argument("--url", default=None, help="service URL for a job id (PRUNESERVE_URL)")
    p.add_argument("--api-key", default=None, help="API key (PRUNESERVE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.console import Console

    from clients.cli.report_view import print_report
    from service.schemas import PruneReport

    local = Path(args.target)
    try:
        if local.is_dir():
            if not (local / REPORT_FILE).is_file():
                raise CliError(USAGE, "NotFound", f"{local} has no {REPORT_FILE}: not an output")
            report = PruneReport.model_validate_json((local / REPORT_FILE).read_text())
            source = f"{local}:"
        else:
            report, source = _remote(args), f"job {args.target}:"
    except ValidationError as exc:
        raise CliError(USAGE, "BadReport", f"{REPORT_FILE} does not parse: {exc}") from None
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print_report(report, Console(), source)
    return 0


def _remote(args: argparse.Namespace):
    from clients.client import DEFAULT_URL, PruneClient
    from clients.errors import PruneServeError

    url = args.url or os.environ.get("PRUNESERVE_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("PRUNESERVE_API_KEY")
    if "/" in args.target or args.target.startswith("."):
        raise CliError(USAGE, "NotFound", f"no directory {args.target}")
    try:
        with PruneClient(url, key) as client:
            return client.report(args.target)
    except PruneServeError as exc:
        raise CliError(REQUEST_FAILED, type(exc).__name__, str(exc)) from None
