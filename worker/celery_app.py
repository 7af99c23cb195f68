"""The worker's Celery app (from Settings), its heartbeat, the orphaned-job sweep and the
retention sweep."""

from __future__ import annotations

import logging
import socket

import redis
from celery.signals import worker_ready, worker_shutdown

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
)
_beat: list[Ticker] = []


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
