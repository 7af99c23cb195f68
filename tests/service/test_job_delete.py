"""job_delete on a real Redis and real files: only the owner deletes, a repeat by the owner
succeeds, everything the job had goes (the Idempotency-Key too), and a queued job's task finds
no job to run."""

from __future__ import annotations

import pytest

from service import job_delete
from service.schemas import PruneSpec
from tests.worker.redis_store import fresh_store
from worker.runner import JobRunner

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


@pytest.fixture
def store(tmp_path):
    s = fresh_store(tmp_path)
    yield s
    s.r.flushdb()


def test_only_the_owner_deletes_and_a_repeat_succeeds(store):
    rec, _ = store.create("alice", SPEC, idem_key="k1")
    out = store.settings.jobs_dir / rec.id
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "model.safetensors").write_bytes(b"weights")
    assert not job_delete.delete(store, "bob", rec.id)
    assert store.get(rec.id) is not None and out.is_dir()
    assert job_delete.delete(store, "alice", rec.id)
    assert store.get(rec.id) is None and not out.exists() and store.events(rec.id) == []
    assert store.list("alice", None, 10, None) == ([], None)
    assert store.count_by_state()["queued"] == 0 and store.unqueued_since(-1) == []
    assert job_delete.delete(store, "alice", rec.id)  # the tombstone answers a repeat
    assert not job_delete.delete(store, "bob", rec.id)
    assert not job_delete.delete(store, "alice", "0" * 32)
    again, created = store.create("alice", SPEC, idem_key="k1")
    assert created and again.id != rec.id


def test_a_deleted_queued_job_is_dropped_by_its_task(store):
    rec, _ = store.create("alice", SPEC)
    assert job_delete.delete(store, "alice", rec.id)
    assert JobRunner(store, store.settings, rec.id).run() == "missing"
    assert store.get(rec.id) is None and store.events(rec.id) == []


def test_an_id_that_is_not_a_job_id_names_no_path(store):
    outside = store.settings.jobs_dir.parent / "keep"
    outside.mkdir(parents=True)
    job_delete.remove_files(store, "../keep")
    assert outside.is_dir()
