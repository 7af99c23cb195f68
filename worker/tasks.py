"""Celery tasks, thin: ids in, the JobRunner does the work."""

from __future__ import annotations

from service.job_delete import remove_files
from service.queue import PRUNE_TASK
from worker.celery_app import app, settings, store
from worker.runner import JobRunner


@app.task(name=PRUNE_TASK, acks_late=True, reject_on_worker_lost=True)
def prune_model(job_id: str) -> str:
    """Prune the model of job `job_id`; safe to deliver more than once. A job deleted before
    or while it ran ("missing") leaves no files."""
    jobs = store()
    state = JobRunner(jobs, settings, job_id).run()
    if state == "missing":
        remove_files(jobs, job_id)
    return state
