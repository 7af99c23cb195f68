"""Remote commands: submit, status, list, watch, cancel, delete, download, datasets upload.

Exit codes as exits.py: 0 success, 1 request failed (message on stderr), 2 bad usage,
3 job failed, 4 job cancelled, 5 gave up waiting. `--json` prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from clients.cli.dry_run import add_plan_args, cmd_remote_dry_run
from clients.cli.exits import (
    CANCELLED,
    FAILED,
    REQUEST_FAILED,
    TIMEOUT,
    USAGE,
    CliError,
    validated_spec,
)
from clients.cli.spec_args import add_spec_args
from clients.cli.watch import JobWatcher, progress_line, summary_table
from clients.client import DEFAULT_URL, PruneClient
from clients.errors import JobCancelled, JobEnded, JobFailed, PruneServeError
from service.schemas import JobPublic, JobState


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None, help=f"service URL (PRUNESERVE_URL, {DEFAULT_URL})")
    common.add_argument("--api-key", default=None, help="API key (PRUNESERVE_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON on stdout")

    p = sub.add_parser("submit", parents=[common], help="submit a pruning job to the service")
    add_spec_args(p)
    p.add_argument("--wait", action="store_true", help="show progress until the job ends")
    p.add_argument("--download", metavar="DIR", help="then download and verify the checkpoint")
    p.add_argument("--idempotency-key", default=None, help="default: a fresh uuid4")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after S seconds")
    add_plan_args(p)
    p.set_defaults(func=_handle(cmd_submit))

    p = sub.add_parser("status", parents=[common], help="show one job")
    p.add_argument("job")
    p.add_argument("--events", action="store_true", help="also print the job's event log")
    p.set_defaults(func=_handle(cmd_status))

    p = sub.add_parser("list", parents=[common], help="list your jobs, newest first")
    p.add_argument("--state", choices=[s.value for s in JobState], default=None)
    p.add_argument("--limit", type=int, default=None, help="at most N jobs (one page)")
    p.add_argument("--cursor", default=None, help="the next page, as the previous one said")
    p.set_defaults(func=_handle(cmd_list))

    p = sub.add_parser("watch", parents=[common], help="live progress bar until the job ends")
    p.add_argument("job")
    p.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    p.set_defaults(func=_handle(cmd_watch))

    p = sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    p.add_argument("job")
    p.set_defaults(func=_handle(cmd_cancel))

    p = sub.add_parser(
        "delete", parents=[common], help="delete a job and its files (cancels it if running)"
    )
    p.add_argument("job")
    p.set_defaults(func=_handle(cmd_delete))

    p = sub.add_parser("download", parents=[common], help="download and verify a checkpoint")
    p.add_argument("job")
    p.add_argument("dir")
    p.set_defaults(func=_handle(cmd_download))

    p = sub.add_parser("datasets", help="calibration datasets on the service")
    ds = p.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")
    p = ds.add_parser("upload", parents=[common], help="upload a .txt/.jsonl calibration file")
    p.add_argument("file")
    p.set_defaults(func=_handle(cmd_upload))


def _handle(cmd: Callable[[argparse.Namespace, PruneClient], int]) -> Callable:
    """Build the client from flags/env; turn typed errors into one stderr line + exit code."""

    @functools.wraps(cmd)
    def run(args: argparse.Namespace) -> int:
        url = args.url or os.environ.get("PRUNESERVE_URL") or DEFAULT_URL
        key = args.api_key or os.environ.get("PRUNESERVE_API_KEY")
        try:
            with PruneClient(url, key) as client:
                return cmd(args, client)
        except JobEnded as exc:
            if args.json:
                _emit(exc.job.model_dump(mode="json"))
            print(f"error: {exc}", file=sys.stderr)
            if isinstance(exc, JobFailed):
                return FAILED
            return CANCELLED if isinstance(exc, JobCancelled) else TIMEOUT
        except PruneServeError as exc:
            if args.json:
                _emit({"error": exc.to_dict()})
            print(f"error: {exc}", file=sys.stderr)
            return REQUEST_FAILED
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return REQUEST_FAILED
        except CliError as exc:  # bad flags: main prints the line and exits with its code
            if args.json:
                _emit({"error": {"type": exc.kind, "message": exc.message}})
            raise

    return run


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _console(stdout: bool = False):
    from rich.console import Console

    return Console(stderr=not stdout)


def _wait(client: PruneClient, job_id: str, timeout: float | None) -> JobPublic:
    with JobWatcher(_console()) as watcher:
        return client.wait(job_id, on_progress=watcher, timeout=timeout)


def cmd_submit(args: argparse.Namespace, client: PruneClient) -> int:
    spec = validated_spec(args)
    if args.dry_run:
        return cmd_remote_dry_run(args, client, spec)
    if args.plan_for is not None:
        raise CliError(USAGE, "UsageError", "--plan-for plans only: add --dry-run")
    job = client.submit(spec, idempotency_key=args.idempotency_key)
    files = None
    if not args.json:
        print(f"submitted job {job.id} ({job.state.value})", file=sys.stderr)
    if args.wait or args.download:
        job = _wait(client, job.id, args.timeout)
        if not args.json:
            _print_summary(job, client)
    if args.download:
        files = [str(p) for p in client.download(job.id, args.download)]
        if not args.json:
            print(f"downloaded and verified {len(files)} files into {args.download}")
    if args.json:
        out = job.model_dump(mode="json")
        if files is not None:
            out["files"] = files
        _emit(out)
    elif not (args.wait or args.download):
        print(job.id)
    return 0


def cmd_status(args: argparse.Namespace, client: PruneClient) -> int:
    job = client.get(args.job)
    events = client.events(args.job) if args.events else None
    if args.json:
        out = job.model_dump(mode="json")
        if events is not None:
            out["events"] = [e.model_dump(mode="json") for e in events]
        _emit(out)
        return 0
    s = job.spec
    print(f"job       {job.id}")
    print(f"state     {job.state.value}")
    print(f"spec      {s.model} {s.method} sparsity={s.sparsity} calibration={_calib(job)}")
    print(f"progress  {progress_line(job)}")
    print(f"created   {job.created_at:%Y-%m-%d %H:%M:%S}")
    if job.error:
        print(f"error     {job.error.type}: {job.error.message}")
    if job.summary:
        _console(stdout=True).print(summary_table(job.summary))
    for e in events or []:
        print(f"{e.ts:%H:%M:%S} {e.kind:<8} {e.message}")
    return 0


def _calib(job: JobPublic) -> str:
    c = job.spec.calibration
    return f"{c.dataset}x{c.nsamples}x{c.seqlen}"


def cmd_list(args: argparse.Namespace, client: PruneClient) -> int:
    page = client.list(state=args.state, limit=args.limit, cursor=args.cursor)
    if args.json:
        _emit(page.model_dump(mode="json"))
        return 0
    _console(stdout=True).print(jobs_table(page.items))
    if page.next_cursor:
        print(f"more: pruneserve list --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def jobs_table(jobs: list[JobPublic]):
    """One row a job; ids are never cut or folded (they are copied into other commands), the
    other columns wrap to fit the terminal."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("id", no_wrap=True, min_width=max((len(j.id) for j in jobs), default=2))
    for name in ("state", "model", "method", "created"):
        table.add_column(name, overflow="fold")
    for j in jobs:
        state = j.state.value
        if not j.state.terminal:
            state += f" {j.progress.stage} {j.progress.percent:.0f}%"
        table.add_row(
            j.id,
            state,
            j.spec.model,
            f"{j.spec.method} {j.spec.sparsity}",
            f"{j.created_at:%Y-%m-%d %H:%M}",
        )
    return table


def cmd_watch(args: argparse.Namespace, client: PruneClient) -> int:
    job = _wait(client, args.job, args.timeout)
    if args.json:
        _emit(job.model_dump(mode="json"))
    else:
        _print_summary(job, client)
    return 0


def _print_summary(job: JobPublic, client: PruneClient) -> None:
    """The whole terminal summary of a succeeded job (`pruneserve report` prints it again)."""
    if job.state == JobState.succeeded:
        from clients.cli.report_view import print_report

        source = f"job {job.id} {job.state.value}:"
        print_report(client.report(job.id), _console(stdout=True), source)
    elif job.summary:
        _console(stdout=True).print(
            summary_table(job.summary, title=f"job {job.id} {job.state.value}")
        )
    else:
        print(f"job {job.id} {job.state.value}")


def cmd_cancel(args: argparse.Namespace, client: PruneClient) -> int:
    job = client.cancel(args.job)
    if args.json:
        _emit(job.model_dump(mode="json"))
    else:
        print(f"job {job.id} {job.state.value}")
    return 0


def cmd_delete(args: argparse.Namespace, client: PruneClient) -> int:
    client.delete(args.job)
    if args.json:
        _emit({"id": args.job, "deleted": True})
    else:
        print(f"job {args.job} deleted")
    return 0


def cmd_download(args: argparse.Namespace, client: PruneClient) -> int:
    paths = client.download(args.job, args.dir)
    if args.json:
        _emit({"job": args.job, "files": [str(p) for p in paths]})
    else:
        for p in paths:
            print(p)
        print(f"downloaded and verified {len(paths)} files", file=sys.stderr)
    return 0


def cmd_upload(args: argparse.Namespace, client: PruneClient) -> int:
    ds = client.upload_dataset(args.file)
    if args.json:
        _emit(ds.model_dump(mode="json"))
    else:
        print(f"dataset {ds.id} ({ds.filename}, {ds.size} bytes)")
        print(f"use it with: --calibration upload:{ds.id}")
    return 0
