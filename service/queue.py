"""A light Celery app from Settings: enough to enqueue tasks by name (no worker imports).

The worker builds its app with the same function, so both sides share one broker config.
"""

from __future__ import annotations

from celery import Celery

from service.jobs import JobStore
from service.settings import Settings

PRUNE_TASK = "pruneserve.prune_model"


def make_celery(settings: Settings, name: str = "pruneserve") -> Celery:
    """Celery configured for long, idempotent jobs on one queue."""
    app = Celery(name, broker=settings.REDIS_URL)
    app.conf.update(
        task_default_queue=settings.QUEUE,
        task_routes={PRUNE_TASK: {"queue": settings.QUEUE}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.VISIBILITY_TIMEOUT_S},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def enqueue(app: Celery, settings: Settings, job_id: str) -> None:
    """Send the prune task for `job_id` by name."""
    app.send_task(PRUNE_TASK, args=[job_id], queue=settings.QUEUE)


def dispatch(app: Celery, settings: Settings, store: JobStore, job_id: str) -> None:
    """Send the task of a saved job, then clear its "never enqueued" mark. Should either step
    fail, the recovery sweep sends it later (a second delivery is harmless)."""
    enqueue(app, settings, job_id)
    store.mark_enqueued(job_id)
