"""The retention sweep: jobs that ended more than PRUNESERVE_ARTIFACT_TTL_DAYS ago are deleted
as DELETE /v1/jobs/{id} deletes them, and deleted jobs' files that a worker was still writing
are removed once no live process runs the job. Queued and running jobs never expire."""

from __future__ import annotations

import logging
import time

from service import job_delete
from service.jobs import FINISHED, JobStore
from service.schemas import JobState

log = logging.getLogger(__name__)
DAY_S = 24 * 3600


class RetentionSweep:
    """One sweep per call (a worker thread calls it every PRUNESERVE_RETENTION_SWEEP_S)."""

    def __init__(self, store: JobStore):
        self.store = store
        self.indexed = False

    def __call__(self) -> None:
        try:
            if self.store.settings.ARTIFACT_TTL_DAYS is not None and not self.indexed:
                index_finished(self.store)
                self.indexed = True
            expire(self.store, time.time())
            purge_deleted(self.store)
        except Exception:  # the thread must outlive one bad sweep; the next one retries
            log.exception("retention sweep failed")


def expire(store: JobStore, now: float) -> list[str]:
    """Delete every job that ended more than ARTIFACT_TTL_DAYS before `now` (epoch seconds)."""
    ttl_days = store.settings.ARTIFACT_TTL_DAYS
    if ttl_days is None:
        return []
    deleted = []
    for raw in store.r.zrangebyscore(FINISHED, "-inf", now - ttl_days * DAY_S):
        rec = store.get(raw.decode())
        if rec is None:  # deleted meanwhile
            store.r.zrem(FINISHED, raw)
        elif job_delete.delete(store, rec.tenant, rec.id):
            log.info(
                "job %s expired (ended %s, retention %g days)", rec.id, rec.finished_at, ttl_days
            )
            deleted.append(rec.id)
    return deleted


def purge_deleted(store: JobStore) -> list[str]:
    """Remove the files of deleted jobs that no live process runs any more (their worker died
    before it could remove them itself)."""
    purged = []
    for job_id in job_delete.pending_purges(store):
        if not store.job_owner_alive(job_id):
            job_delete.remove_files(store, job_id)
            purged.append(job_id)
    return purged


def index_finished(store: JobStore) -> int:
    """Add ended jobs recorded before the ps:finished index existed; how many were added."""
    added = 0
    for state in (s for s in JobState if s.terminal):
        for job_id in store.ids_in_state(state.value):
            if store.r.zscore(FINISHED, job_id) is not None:
                continue
            rec = store.get(job_id)
            if rec is not None and rec.finished_at is not None:
                store.r.zadd(FINISHED, {job_id: rec.finished_at.timestamp()})
                added += 1
    return added
