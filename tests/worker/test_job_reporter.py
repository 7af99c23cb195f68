"""JobReporter on a real Redis: the engine's progress lands in the record of the job it runs,
and cancel and time limit stop it."""

from __future__ import annotations

import pytest

from service import job_state
from service.jobs import now
from service.schemas import JobState, PruneSpec
from worker.engine.errors import Cancelled
from worker.job_reporter import JobReporter, TimeLimitExceeded

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


@pytest.fixture
def job_id(store) -> str:
    rec, _ = store.create("alice", SPEC)
    claim = lambda r: job_state.claim(r, "w1", now(), max_attempts=3, cancel_requested=False)  # noqa: E731
    store.update(rec.id, claim)
    return rec.id


def test_stage_and_steps_write_percent_from_the_span_and_layers(store, job_id):
    rep = JobReporter(store, job_id, "w1", time_limit_s=3600)
    rep.stage("calibrate", 0, span=(5.0, 10.0))
    assert (store.get(job_id).progress.stage, store.get(job_id).progress.percent) == (
        "calibrate",
        5.0,
    )
    rep.stage("prune", 4, span=(10.0, 90.0))
    rep.step(1, 4)
    p = store.get(job_id).progress
    assert (p.stage, p.layer, p.n_layers, p.percent) == ("prune", 1, 4, 30.0)
    assert p.eta_s is not None
    rep.step(4, 4, "layer 4/4")
    p = store.get(job_id).progress
    assert (p.layer, p.percent, p.message) == (4, 90.0, "layer 4/4")
    kinds = [(e["kind"], e["message"]) for e in store.events(job_id)]
    assert ("stage", "prune") in kinds and ("layer", "layer 1/4") in kinds
    assert ("layer", "layer 4/4") in kinds


def test_a_later_stage_runs_to_the_end_of_its_span_and_keeps_the_layer_count(store, job_id):
    rep = JobReporter(store, job_id, "w1", time_limit_s=3600)
    rep.stage("prune", 3, span=(0.0, 50.0))
    rep.stage("save", 0, span=(50.0, 100.0))
    rep.step(1, 1)
    p = store.get(job_id).progress
    assert (p.stage, p.n_layers, p.percent) == ("save", 3, 100.0)


def test_warnings_become_events(store, job_id):
    JobReporter(store, job_id, "w1", time_limit_s=3600).warn("damping raised to 0.1")
    last = store.events(job_id)[-1]
    assert (last["kind"], last["message"]) == ("warning", "damping raised to 0.1")


def test_a_reporter_that_lost_the_job_writes_nothing(store, job_id):
    before = store.get(job_id)
    JobReporter(store, job_id, "w-old", time_limit_s=3600).step(1, 2)
    assert store.get(job_id) == before
    store.update(job_id, lambda r: job_state.cancel(r, now(), owner="w1"))
    JobReporter(store, job_id, "w1", time_limit_s=3600).step(1, 2)
    assert store.get(job_id).state == JobState.cancelled


def test_check_cancel_raises_on_the_flag_and_past_the_time_limit(store, job_id):
    JobReporter(store, job_id, "w1", time_limit_s=3600).check_cancel()  # nothing pending
    with pytest.raises(TimeLimitExceeded, match="PRUNESERVE_JOB_TIME_LIMIT_S=-1"):
        JobReporter(store, job_id, "w1", time_limit_s=-1).check_cancel()
    store.request_cancel(job_id)
    with pytest.raises(Cancelled):
        JobReporter(store, job_id, "w1", time_limit_s=3600).check_cancel()
