"""A Redis outage while a job runs (real Redis behind a proxy that drops the connection at the
job's write of layer 2's event): a short one is ridden through; a longer one stops the attempt
with its checkpoint kept, and the next delivery resumes it without counting an attempt."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.schemas import CalibrationSpec, JobState, PruneSpec, resume_dir
from tests.worker.redis_store import flaky_store, fresh_store
from worker.interruption import NOTE
from worker.runner import JobRunner

SPEC = PruneSpec(
    model="tiny-llama4",
    method="sparsegpt",
    sparsity="2:4",
    checkpoint_layers=1,
    calibration=CalibrationSpec(dataset="wikitext2", nsamples=4, seqlen=32),
)
LAYER_2 = b"layer 2/4"  # the event the reporter writes once layer 2 is done and checkpointed


@pytest.fixture
def direct(tmp_path, job_dirs):
    def make(**settings):
        return fresh_store(tmp_path, **job_dirs, **settings)

    yield make
    fresh_store(tmp_path).r.flushdb()


def submit(store) -> str:
    rec, _ = store.create("alice", SPEC)
    store.mark_enqueued(rec.id)
    return rec.id


def layer_events(store, job_id: str) -> list[str]:
    return [e["message"] for e in store.events(job_id) if e["kind"] == "layer"]


def test_a_short_outage_is_ridden_through_without_a_restart(direct, proxy):
    store = direct(REDIS_RETRY_S=60)
    job_id = submit(store)
    proxy.cut_on(LAYER_2, heal_after=3)  # back after three refused connections
    assert JobRunner(flaky_store(store, proxy), store.settings, job_id).run() == "succeeded"
    assert proxy.refused >= 3
    rec = store.get(job_id)
    assert (rec.state, rec.attempts, rec.summary.resumed_at_layer) == (JobState.succeeded, 1, None)
    assert layer_events(store, job_id) == ["layer 1/4", "layer 2/4", "layer 3/4", "layer 4/4"]


def test_a_long_outage_keeps_the_checkpoint_and_the_restart_resumes_without_an_attempt(
    direct, proxy
):
    store = direct(REDIS_RETRY_S=0.5, MAX_ATTEMPTS=1)
    job_id = submit(store)
    out = store.settings.jobs_dir / job_id
    proxy.cut_on(LAYER_2)  # dark until healed
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(JobRunner(flaky_store(store, proxy), store.settings, job_id).run)
        while not (resume_dir(out) / NOTE).exists():  # it gave up on Redis and said why
            assert not first.done(), first.result()
            time.sleep(0.05)
        assert (resume_dir(out) / "walk.json").is_file()  # the checkpoint after layer 2
        assert not first.done()  # it returns to Celery only once Redis answers, or the
        proxy.heal()  # task could not be acknowledged
        assert first.result(timeout=60) == "interrupted"
    rec = store.get(job_id)
    assert (rec.state, rec.attempts) == (JobState.running, 1)
    while store.job_owner_alive(job_id):  # the heartbeat expires, as the sweep waits for
        time.sleep(0.05)
    assert JobRunner(store, store.settings, job_id).run() == "succeeded"
    rec = store.get(job_id)
    assert (rec.attempts, rec.summary.resumed_at_layer) == (1, 2)  # MAX_ATTEMPTS=1 was enough
    starts = [e["message"] for e in store.events(job_id) if e["message"].startswith("running")]
    assert starts[0] == "running (attempt 1)"
    assert starts[1].startswith("running (attempt 1, again: Redis was unreachable for 0.5 s")
    assert layer_events(store, job_id) == ["layer 1/4", "layer 3/4", "layer 4/4"]
    assert sorted(p.name for p in out.parent.iterdir()) == [job_id]  # no .resume, no .partial
