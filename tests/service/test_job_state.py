"""The job state machine without Redis: every legal transition, and illegal ones refused."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service import job_state
from service.job_record import JobRecord
from service.job_state import IllegalTransition
from service.schemas import Artifact, JobError, JobPublic, JobState, PruneSpec, ReportSummary

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
T1 = T0 + timedelta(seconds=5)
SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


def queued() -> JobRecord:
    return job_state.new_job("j1", "alice", SPEC, T0)


def running(owner: str = "w1") -> JobRecord:
    return job_state.claim(queued(), owner, T0, max_attempts=3, cancel_requested=False)


def test_new_job_is_queued_and_public_json_has_no_internal_fields():
    rec = queued()
    assert (rec.state, rec.attempts, rec.progress.stage) == (JobState.queued, 0, "queued")
    public = rec.public().model_dump(mode="json")
    assert set(public) == set(JobPublic.model_fields)
    assert "tenant" not in public and "owner" not in public


def test_claim_runs_under_the_owner_and_counts_the_attempt():
    rec = running()
    assert (rec.state, rec.owner, rec.attempts, rec.started_at) == (JobState.running, "w1", 1, T0)
    assert (rec.progress.stage, rec.progress.percent) == ("starting", 0.0)


def test_claim_of_an_orphaned_running_job_takes_it_over():
    rec = job_state.claim(running("dead"), "w2", T1, max_attempts=3, cancel_requested=False)
    assert (rec.owner, rec.attempts, rec.started_at) == ("w2", 2, T1)


def test_claim_fails_with_worker_lost_after_max_attempts():
    rec = running()
    rec = job_state.claim(rec, "w2", T1, max_attempts=1, cancel_requested=False)
    assert rec.state == JobState.failed and rec.finished_at == T1
    assert rec.error.type == "WorkerLost" and "died 1 time(s)" in rec.error.message
    assert "PRUNESERVE_MAX_ATTEMPTS=1" in rec.error.message


def test_claim_after_an_interrupted_attempt_goes_on_as_the_same_attempt():
    kw = dict(max_attempts=1, cancel_requested=False, interrupted=True)
    rec = job_state.claim(running("w1"), "w2", T1, **kw)  # running() used attempt 1 of 1
    assert (rec.state, rec.owner, rec.attempts, rec.started_at) == (JobState.running, "w2", 1, T1)
    assert job_state.claim(queued(), "w1", T1, **kw).attempts == 1  # a first start counts


def test_claim_with_a_pending_cancel_ends_cancelled_without_starting():
    rec = job_state.claim(queued(), "w1", T1, max_attempts=3, cancel_requested=True)
    assert (rec.state, rec.progress.stage, rec.attempts) == (JobState.cancelled, "cancelled", 0)


def test_progress_merges_fields_for_the_owner_only():
    rec = job_state.progress(running(), "w1", stage="prune", layer=2, n_layers=4, percent=40.0)
    rec = job_state.progress(rec, "w1", layer=3, eta_s=1.5)
    assert (rec.progress.stage, rec.progress.layer, rec.progress.n_layers) == ("prune", 3, 4)
    assert (rec.progress.percent, rec.progress.eta_s) == (40.0, 1.5)
    with pytest.raises(IllegalTransition, match="run by w1, not w2"):
        job_state.progress(rec, "w2", layer=4)


def test_succeed_records_summary_artifacts_and_full_percent():
    art = Artifact(path="model.safetensors", size=3, sha256="0" * 64)
    rec = job_state.progress(running(), "w1", percent=80.0, eta_s=3.0)
    rec = job_state.succeed(rec, "w1", T1, ReportSummary(sparsity=0.5), [art])
    assert (rec.state, rec.finished_at, rec.artifacts) == (JobState.succeeded, T1, [art])
    assert (rec.progress.stage, rec.progress.percent, rec.progress.eta_s) == (
        "succeeded",
        100,
        None,
    )
    assert rec.summary.sparsity == 0.5


def test_fail_keeps_the_percent_reached_and_records_the_error():
    rec = job_state.progress(running(), "w1", percent=40.0)
    rec = job_state.fail(rec, "w1", T1, JobError(type="ModelLoadError", message="no such model"))
    assert (rec.state, rec.progress.stage, rec.progress.percent) == (JobState.failed, "failed", 40)
    assert rec.error.type == "ModelLoadError"


def test_cancel_queued_by_anyone_running_by_its_owner_only():
    assert job_state.cancel(queued(), T1).state == JobState.cancelled
    assert job_state.cancel(running(), T1, owner="w1").state == JobState.cancelled
    with pytest.raises(IllegalTransition, match="is running, not queued"):
        job_state.cancel(running(), T1)
    with pytest.raises(IllegalTransition, match="run by w1"):
        job_state.cancel(running(), T1, owner="w2")


@pytest.mark.parametrize("end", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_allows_no_transition(end):
    rec = running().model_copy(update={"state": JobState(end)})
    calls = [
        lambda: job_state.claim(rec, "w2", T1, max_attempts=3, cancel_requested=False),
        lambda: job_state.progress(rec, "w1", layer=1),
        lambda: job_state.succeed(rec, "w1", T1, ReportSummary(sparsity=0.5), []),
        lambda: job_state.fail(rec, "w1", T1, JobError(type="X", message="y")),
        lambda: job_state.cancel(rec, T1),
        lambda: job_state.cancel(rec, T1, owner="w1"),
    ]
    for call in calls:
        with pytest.raises(IllegalTransition, match=f"it is {end}"):
            call()


def test_a_queued_job_cannot_progress_or_finish_before_it_is_claimed():
    rec = queued()
    with pytest.raises(IllegalTransition, match="is queued, not running"):
        job_state.progress(rec, "w1", layer=1)
    with pytest.raises(IllegalTransition, match="is queued, not running"):
        job_state.succeed(rec, "w1", T1, ReportSummary(sparsity=0.5), [])


def test_record_round_trips_through_json_and_loads_older_records():
    rec = job_state.progress(running(), "w1", stage="prune", layer=1, n_layers=2)
    assert JobRecord.model_validate_json(rec.model_dump_json()) == rec
    old = {  # the untyped dict the store wrote before the record was typed
        "id": "j0",
        "tenant": "bob",
        "state": "queued",
        "spec": SPEC.model_dump(mode="json"),
        "created_at": T0.isoformat(),
        "started_at": None,
        "finished_at": None,
        "attempts": 0,
        "progress": {"stage": "queued"},
        "error": None,
        "summary": None,
        "artifacts": [],
        "owner": None,
    }
    loaded = JobRecord.model_validate(old)
    assert (loaded.state, loaded.progress.percent, loaded.spec) == (JobState.queued, 0.0, SPEC)
