"""`pruneserve api` (uvicorn, never torch) and `pruneserve worker` (a Celery worker)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    api = subparsers.add_parser("api", help="run the REST API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    api.add_argument("--port", type=int, default=8000, help="port (8000)")
    api.add_argument(
        "--workers",
        type=int,
        default=None,
        help="uvicorn worker processes (PRUNESERVE_API_WORKERS, 1); about one per core",
    )
    api.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log every request (PRUNESERVE_API_ACCESS_LOG, on)",
    )
    api.add_argument("--log-level", default="info")
    api.add_argument(
        "--http",
        choices=["h11", "httptools"],
        default="h11",
        help="HTTP parser (h11): h11 bounds header bytes; httptools is faster but buffers any "
        "amount of headers, so use it only behind a proxy that limits them",
    )
    api.set_defaults(func=run_api)

    worker = subparsers.add_parser("worker", help="run a pruning worker (Celery)")
    worker.add_argument("--queues", default="gpu", help="comma-separated queues (gpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once; 1 per GPU")
    worker.add_argument("--pool", default="prefork", help="prefork | solo | threads (prefork)")
    worker.add_argument("--hostname", default=None, help="worker node name (celery@%%h)")
    worker.add_argument("--loglevel", default="info")
    worker.set_defaults(func=run_worker)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.settings import Settings

    try:
        settings = Settings()
        settings.check_api_safety()  # fail with one clear line before uvicorn starts
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    workers = args.workers if args.workers is not None else settings.API_WORKERS
    if workers < 1:
        raise SystemExit(f"error: --workers / PRUNESERVE_API_WORKERS must be >= 1, not {workers}")
    access_log = settings.API_ACCESS_LOG if args.access_log is None else args.access_log
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        access_log=access_log,
        log_level=args.log_level,
        # h11 bounds what a connection may send before its headers end (httptools buffers any
        # amount); headers between MAX_HEADER_BYTES and this bound get the JSON 431
        http=args.http,
        h11_max_incomplete_event_size=4 * settings.MAX_HEADER_BYTES,
    )
    return 0


def run_worker(args: argparse.Namespace) -> int:
    _check_settings()  # one clear line before Celery starts, not a traceback at import
    from worker.celery_app import app

    argv = [
        "worker",
        f"--queues={args.queues}",
        f"--concurrency={args.concurrency}",
        f"--pool={args.pool}",
        f"--loglevel={args.loglevel}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def _check_settings() -> None:
    """Exit with `error: PRUNESERVE_<NAME>: <why>` when a setting does not validate."""
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        Settings()
    except ValidationError as exc:
        why = [
            f"PRUNESERVE_{e['loc'][0]}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
        ]
        text = "; ".join(w.replace("Value error, ", "") for w in why)
        raise SystemExit(f"error: {text}") from None
