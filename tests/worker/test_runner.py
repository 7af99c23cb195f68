"""JobRunner on a real Redis, without Celery: one delivery claims, runs and records the job;
repeated, late or doomed deliveries leave it right; a cancel during any stage is honoured; the
log has one line per job event."""

from __future__ import annotations

import logging
import os

from service import job_state
from service.jobs import now
from service.schemas import (
    REPORT_FILE,
    CalibrationSpec,
    EvalSpec,
    JobState,
    PruneReport,
    PruneSpec,
)
from tests.worker.redis_store import flaky_store, fresh_store
from worker.runner import HOST, JobRunner

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


def submit(store, spec: PruneSpec = SPEC) -> str:
    rec, _ = store.create("alice", spec)
    store.mark_enqueued(rec.id)
    return rec.id


def runner(store, job_id: str) -> JobRunner:
    return JobRunner(store, store.settings, job_id)


def write_finished_checkpoint(store, job_id: str) -> None:
    """What an attempt that died after writing its checkpoint leaves behind."""
    out = store.settings.jobs_dir / job_id
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"weights")
    (out / REPORT_FILE).write_text(PruneReport(spec=SPEC, sparsity=0.5).model_dump_json())


def take(store, job_id: str, owner: str) -> None:
    claim = lambda r: job_state.claim(r, owner, now(), max_attempts=3, cancel_requested=False)  # noqa: E731
    store.update(job_id, claim)


def test_missing_job_is_dropped(store):
    assert runner(store, "no-such-job").run() == "missing"


def test_finished_checkpoint_is_recorded_succeeded_with_artifacts(store):
    job_id = submit(store)
    write_finished_checkpoint(store, job_id)
    assert runner(store, job_id).run() == "succeeded"
    rec = store.get(job_id)
    assert (rec.attempts, rec.progress.percent, rec.summary.sparsity) == (1, 100.0, 0.5)
    assert sorted(a.path for a in rec.artifacts) == ["model.safetensors", REPORT_FILE]
    assert store.ids_in_state("succeeded") == [job_id]
    assert store.durations("succeeded")["+Inf"] == 1
    assert not store.job_owner_alive(job_id)  # heartbeat cleared


def test_a_second_delivery_of_a_finished_job_changes_nothing(store):
    job_id = submit(store)
    write_finished_checkpoint(store, job_id)
    runner(store, job_id).run()
    before = store.get(job_id)
    assert runner(store, job_id).run() == "succeeded"
    assert store.get(job_id) == before


def test_cancel_requested_before_the_start_ends_cancelled(store):
    job_id = submit(store)
    store.r.set(f"ps:cancel:{job_id}", "1")  # as request_cancel does, racing the claim
    assert runner(store, job_id).run() == "cancelled"
    rec = store.get(job_id)
    assert (rec.state, rec.attempts, rec.progress.stage) == (JobState.cancelled, 0, "cancelled")


def test_engine_error_fails_the_job_with_type_and_message(store):
    job_id = submit(store)  # the model "tiny-llama" does not exist in this MODELS_DIR
    assert runner(store, job_id).run() == "failed"
    rec = store.get(job_id)
    assert rec.error.type == "ModelLoadError" and "tiny-llama" in rec.error.message
    assert store.events(job_id)[-1]["kind"] == "error"


def test_a_job_whose_worker_died_is_taken_over(store):
    job_id = submit(store)
    take(store, job_id, f"{HOST}:999999999:dead")  # no such pid on this host
    write_finished_checkpoint(store, job_id)
    assert runner(store, job_id).run() == "succeeded"
    assert store.get(job_id).attempts == 2


def test_a_job_running_in_a_live_process_is_a_duplicate_delivery(store):
    job_id = submit(store)
    owner = f"{HOST}:{os.getpid()}:alive"
    take(store, job_id, owner)
    store.beat_job(job_id, owner)
    assert runner(store, job_id).run() == "duplicate"
    assert store.get(job_id).owner == owner


def test_after_max_attempts_the_job_fails_as_worker_lost(tmp_path):
    store = fresh_store(tmp_path, MAX_ATTEMPTS=1)
    job_id = submit(store)
    take(store, job_id, f"{HOST}:999999999:dead")
    assert runner(store, job_id).run() == "failed"
    rec = store.get(job_id)
    assert rec.error.type == "WorkerLost" and "MAX_ATTEMPTS=1" in rec.error.message
    store.r.flushdb()


def test_a_cancel_while_the_pruned_model_is_evaluated_ends_cancelled_without_files(
    tmp_path, job_dirs, proxy
):
    store = fresh_store(tmp_path, **job_dirs)
    cal = CalibrationSpec(dataset="wikitext2", nsamples=4, seqlen=32)
    ev = EvalSpec(dataset="wikitext2", seqlen=32, max_windows=8)
    job_id = submit(store, SPEC.model_copy(update={"calibration": cal, "evaluation": ev}))
    # the user's cancel arrives just as the worker records that the stage began
    proxy.before(b"eval_pruned", lambda: store.request_cancel(job_id))
    assert runner(flaky_store(store, proxy), job_id).run() == "cancelled"
    rec = store.get(job_id)
    assert (rec.state, rec.artifacts, rec.summary) == (JobState.cancelled, [], None)
    assert store.events(job_id)[-1]["message"] == "cancelled; partial files removed"
    assert not list(store.settings.jobs_dir.glob(f"{job_id}*"))
    store.r.flushdb()


def test_the_log_has_a_line_per_job_event_and_the_error_without_its_traceback(
    tmp_path, job_dirs, caplog
):
    store = fresh_store(tmp_path, **job_dirs)
    broken = store.settings.MODELS_DIR / "no-weights"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text('{"model_type": "llama"}')
    job_id = submit(store, SPEC.model_copy(update={"model": "no-weights"}))
    with caplog.at_level(logging.DEBUG, logger="worker"):
        assert runner(store, job_id).run() == "failed"
    lines = [r for r in caplog.records if r.name == "worker.job_events"]
    for event in store.events(job_id)[1:]:  # the first, "queued", is the api's
        assert any(event["message"] in r.getMessage() for r in lines), event
    assert all(r.getMessage().startswith(f"job {job_id} [") for r in lines)
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.getMessage().startswith(f"job {job_id} [load] failed: ModelLoadError: ")
    assert "no *.safetensors weights" in error.getMessage() and error.exc_info is None
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.exc_info)
    assert any(r.exc_info for r in caplog.records)  # the traceback, at debug level
    store.r.flushdb()
