"""Re-queue jobs left `running` by a worker that died (no job heartbeat any more)."""

from __future__ import annotations

import logging

from celery import Celery

from service.jobs import JobStore
from service.queue import enqueue
from service.schemas import JobState
from service.settings import Settings

log = logging.getLogger(__name__)


def requeue_orphans(store: JobStore, settings: Settings, app: Celery) -> list[str]:
    """Send the task again for every running job whose owner stopped beating (once a minute)."""
    requeued = []
    for job_id in store.ids_in_state(JobState.running.value):
        if store.job_owner_alive(job_id):
            continue
        if not store.r.set(f"ps:requeue:{job_id}", "1", nx=True, ex=60):
            continue
        rec = store.get(job_id)
        if rec is None or rec["state"] != JobState.running.value:
            continue
        store.add_event(job_id, "warning", "the worker running this job was lost; re-queued")
        enqueue(app, settings, job_id)
        log.warning("re-queued orphaned job %s", job_id)
        requeued.append(job_id)
    return requeued
