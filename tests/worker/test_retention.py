"""The retention sweep on a real Redis and real files, at a given clock: jobs that ended more
than PRUNESERVE_ARTIFACT_TTL_DAYS ago go, fresh, queued and running ones stay; the files of a
job deleted while it ran go once no live process runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service import job_delete, job_state
from service.jobs import FINISHED, now
from service.schemas import JobError, JobState, PruneSpec, ReportSummary
from tests.worker.redis_store import fresh_store
from worker.retention import RetentionSweep, expire, purge_deleted

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")
OWNER = "host:1:abc"
T0 = now()


@pytest.fixture
def store(tmp_path):
    s = fresh_store(tmp_path, ARTIFACT_TTL_DAYS=1.0)
    yield s
    s.r.flushdb()


def job(store, state: JobState, at=T0, tenant: str = "alice") -> str:
    """A job in `state` whose files exist; it started (and, if it ended, ended) at `at`."""
    rec, _ = store.create(tenant, SPEC)
    out = store.settings.jobs_dir / rec.id
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"weights")
    if state != JobState.queued:
        claim = lambda r: job_state.claim(r, OWNER, at, max_attempts=3, cancel_requested=False)  # noqa: E731
        store.update(rec.id, claim)
    summary = ReportSummary(sparsity=0.5)
    end = {
        JobState.succeeded: lambda r: job_state.succeed(r, OWNER, at, summary, []),
        JobState.failed: lambda r: job_state.fail(r, OWNER, at, JobError(type="E", message="m")),
        JobState.cancelled: lambda r: job_state.cancel(r, at, owner=OWNER),
    }.get(state)
    if end is not None:
        store.update(rec.id, end)
    return rec.id


def exists(store, job_id: str) -> bool:
    on_disk = (store.settings.jobs_dir / job_id).exists()
    assert on_disk == (store.get(job_id) is not None), job_id  # files and record go together
    return on_disk


def test_jobs_that_ended_before_the_ttl_are_deleted_and_the_rest_stay(store):
    day = timedelta(days=1)
    old = [job(store, s, T0 - 2 * day) for s in (JobState.succeeded, JobState.failed)]
    old.append(job(store, JobState.cancelled, T0 - day - timedelta(minutes=1)))
    fresh = job(store, JobState.succeeded, T0 - day + timedelta(minutes=1))
    running = job(store, JobState.running, T0 - 5 * day)
    queued = job(store, JobState.queued)
    assert sorted(expire(store, T0.timestamp())) == sorted(old)
    assert [exists(store, j) for j in old] == [False] * 3
    assert all(exists(store, j) for j in (fresh, running, queued))
    listed, _ = store.list("alice", None, 10, None)
    assert {r.id for r in listed} == {fresh, running, queued}
    assert expire(store, T0.timestamp()) == []


def test_nothing_expires_without_a_ttl(tmp_path):
    store = fresh_store(tmp_path)
    try:
        ended = job(store, JobState.succeeded, T0 - timedelta(days=3650))
        assert expire(store, T0.timestamp()) == []
        assert exists(store, ended)
    finally:
        store.r.flushdb()


def test_jobs_ended_before_the_index_existed_are_indexed_then_expire(store):
    ended = job(store, JobState.failed, T0 - timedelta(days=2))
    store.r.zrem(FINISHED, ended)  # as a record written by an older version
    RetentionSweep(store)()
    assert not exists(store, ended)


def test_a_job_deleted_while_it_runs_loses_its_files_once_its_worker_is_gone(store):
    running = job(store, JobState.running)
    partial = store.settings.jobs_dir / f"{running}.partial"
    partial.mkdir()
    store.beat_job(running, OWNER)  # its worker is alive and still writing
    assert job_delete.delete(store, "alice", running)
    assert store.cancel_requested(running)  # so the worker stops at its next layer
    assert partial.is_dir() and purge_deleted(store) == []
    store.clear_job_beat(running)  # the worker died before removing them itself
    assert purge_deleted(store) == [running]
    assert not partial.exists() and not (store.settings.jobs_dir / running).exists()
    assert not store.cancel_requested(running) and job_delete.pending_purges(store) == []
