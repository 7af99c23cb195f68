"""The worker's Celery app (from Settings), its heartbeat, the orphaned-job sweep, the
retention sweep and its log: one line per job event (worker/job_events.py), no progress bars,
no misleading task lines."""

from __future__ import annotations

import logging
import os
import socket

import redis
from celery.signals import after_setup_logger, worker_init, worker_ready, worker_shutdown

from service.jobs import JobStore
from service.queue import make_celery
from service.settings import Settings
from worker.heartbeat import Ticker
from worker.recovery import sweep
from worker.retention import RetentionSweep

log = logging.getLogger(__name__)
settings = Settings()
app = make_celery(settings, "pruneserve-worker")
app.conf.update(
    include=["worker.tasks"],
    task_time_limit=settings.JOB_TIME_LIMIT_S + 300,  # hard stop (prefork); soft one in reporter
    worker_max_tasks_per_child=20,
    # a lost broker connection must not kill a running job: it rides through the outage
    # itself (PRUNESERVE_REDIS_RETRY_S), or stops with its checkpoints kept (Celery 6's default
    # would cancel it)
    worker_cancel_long_running_tasks_on_connection_loss=False,
)
_beat: list[Ticker] = []


@worker_init.connect
def _no_progress_bars(**_) -> None:
    """tqdm bars (loading weights, writing shards) reach a worker's log as WARNING lines; a
    job's progress is in its record. Set before the pool's processes import transformers."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # the hub fallback for WikiText/C4
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


@after_setup_logger.connect
def _quiet_task_results(**_) -> None:
    """Celery's "Task ...[task id] succeeded in 0.4s: 'failed'" calls any job that ended
    'succeeded'; the job's own lines (its id, stage, outcome and error) say what happened."""
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)


def store() -> JobStore:
    return JobStore(redis.Redis.from_url(settings.REDIS_URL), settings)


def _tick(jobs: JobStore, name: str) -> None:
    jobs.beat_worker(name)
    sweep(jobs, settings, app)


@worker_ready.connect
def _start_heartbeat(sender=None, **_) -> None:
    jobs = store()
    name = getattr(sender, "hostname", None) or socket.gethostname()
    ticker = Ticker(lambda: _tick(jobs, name), settings.HEARTBEAT_S, name="worker-heartbeat")
    ticker.start()
    _beat.append(ticker)
    retention = Ticker(RetentionSweep(store()), settings.RETENTION_SWEEP_S, name="retention")
    retention.start()
    _beat.append(retention)
    log.info("worker %s ready; heartbeat every %ss", name, settings.HEARTBEAT_S)


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_) -> None:
    for ticker in _beat:
        ticker.stop()
    name = getattr(sender, "hostname", None)
    if name:
        try:
            store().r.delete(f"ps:worker:{name}")
        except redis.RedisError as exc:
            log.warning("could not remove heartbeat: %s", exc)
