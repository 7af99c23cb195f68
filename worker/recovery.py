"""The recovery sweep: re-queue jobs left `running` by a worker that died (no job heartbeat),
and send jobs that were saved but never enqueued (the api failed between the two)."""

from __future__ import annotations

import logging

from celery import Celery

from service.jobs import JobStore
from service.queue import dispatch, enqueue
from service.schemas import JobState
from service.settings import Settings

log = logging.getLogger(__name__)
UNQUEUED_GRACE_S = 30.0  # a submit sends its task within milliseconds; this is generous


def sweep(store: JobStore, settings: Settings, app: Celery) -> list[str]:
    """Both recoveries; the ids of the jobs sent again."""
    return requeue_orphans(store, settings, app) + enqueue_unqueued(store, settings, app)


def requeue_orphans(store: JobStore, settings: Settings, app: Celery) -> list[str]:
    """Send the task again for every running job whose owner stopped beating (once a minute)."""
    requeued = []
    for job_id in store.ids_in_state(JobState.running.value):
        if store.job_owner_alive(job_id):
            continue
        if not store.r.set(f"ps:requeue:{job_id}", "1", nx=True, ex=60):
            continue
        rec = store.get(job_id)
        if rec is None or rec.state != JobState.running:
            continue
        store.add_event(job_id, "warning", "the worker running this job was lost; re-queued")
        enqueue(app, settings, job_id)
        log.warning("re-queued orphaned job %s", job_id)
        requeued.append(job_id)
    return requeued


def enqueue_unqueued(
    store: JobStore, settings: Settings, app: Celery, grace_s: float = UNQUEUED_GRACE_S
) -> list[str]:
    """Send the task of every job saved more than `grace_s` ago whose task was never sent."""
    sent = []
    for job_id in store.unqueued_since(grace_s):
        if not store.r.set(f"ps:resend:{job_id}", "1", nx=True, ex=60):
            continue  # another worker's sweep has it
        rec = store.get(job_id)
        if rec is None or rec.state != JobState.queued:
            store.mark_enqueued(job_id)  # cancelled (or gone) meanwhile: nothing to send
            continue
        store.add_event(job_id, "warning", "the job was saved but never enqueued; enqueued now")
        dispatch(app, settings, store, job_id)
        log.warning("enqueued job %s that was saved but never enqueued", job_id)
        sent.append(job_id)
    return sent
