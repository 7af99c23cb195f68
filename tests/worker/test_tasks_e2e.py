"""Cancel a running job, and SIGKILL the worker mid-job: the job never stays `running`."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.e2e
SLOW_MODEL = "slow-llama"


@pytest.fixture(scope="module")
def slow_spec(live_service):
    """A model with more, wider layers so SparseGPT runs for several seconds."""
    path = live_service.models_dir / SLOW_MODEL
    if not path.exists():
        _make_slow_model(path)
    return {
        "model": SLOW_MODEL,
        "method": "sparsegpt",
        "sparsity": "2:4",
        "calibration": {"dataset": "wikitext2", "nsamples": 32, "seqlen": 128},
    }


def _wait_pruning(svc, c, job_id, timeout=90):
    """Wait until the job is running inside the prune stage (a layer boundary passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        if job["progress"]["stage"] == "prune" and job["progress"]["layer"] >= 1:
            return job
        time.sleep(0.1)
    raise TimeoutError(job)


def test_cancel_running_job_removes_partial_files(live_service, slow_spec):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=slow_spec).raise_for_status().json()
        running = _wait_pruning(live_service, c, job["id"])
        assert running["progress"]["n_layers"] > running["progress"]["layer"]
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        done = live_service.wait_job(c, job["id"], ("cancelled", "succeeded", "failed"), 60)
        assert done["state"] == "cancelled", done
        assert c.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"] == []
    jobs_dir = live_service.artifacts_dir / "jobs"
    assert not (jobs_dir / job["id"]).exists()
    assert not (jobs_dir / f"{job['id']}.partial").exists()


def test_cancel_queued_job_never_starts(live_service, slow_spec):
    with live_service.client() as c:
        first = c.post("/v1/jobs", json=slow_spec).raise_for_status().json()
        queued = c.post("/v1/jobs", json=slow_spec).raise_for_status().json()
        r = c.post(f"/v1/jobs/{queued['id']}/cancel")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        c.post(f"/v1/jobs/{first['id']}/cancel")
        live_service.wait_job(c, first["id"], ("cancelled", "succeeded", "failed"), 90)
        after = c.get(f"/v1/jobs/{queued['id']}").json()
        assert after["state"] == "cancelled" and after["attempts"] == 0
        assert after["started_at"] is None


@pytest.mark.parametrize("load", ["eager", "lazy"])
def test_killed_worker_job_restarts_and_succeeds(live_service, slow_spec, load):
    """The restarted attempt resumes the walk at the last layer it checkpointed."""
    spec = {**slow_spec, "load": load, "checkpoint_layers": 1}
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        running = _wait_pruning(live_service, c, job["id"])
        live_service.kill_worker()
        assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"
        live_service.start_worker()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 150)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2
        events = [e["message"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()]
        assert "running (attempt 2)" in events
        summary = done["summary"]
        assert summary["load"].startswith(load)
        assert 1 <= running["progress"]["layer"] <= summary["resumed_at_layer"] < 8, summary
    assert not (live_service.artifacts_dir / "jobs" / f"{job['id']}.partial").exists()


def test_killed_worker_job_fails_clearly_after_max_attempts(live_service, slow_spec):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=slow_spec).raise_for_status().json()
        _wait_pruning(live_service, c, job["id"])
        live_service.kill_worker()
        live_service.start_worker(MAX_ATTEMPTS=1)
        try:
            done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 60)
        finally:
            live_service.stop_worker()
            live_service.start_worker()
        assert done["state"] == "failed", done
        assert done["error"]["type"] == "WorkerLost"
        assert "died 1 time(s)" in done["error"]["message"]
        assert "MAX_ATTEMPTS=1" in done["error"]["message"]
    live_service.wait_ready()


def test_engine_error_fails_with_type_and_message(live_service):
    broken = live_service.models_dir / "broken-model"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    spec = {"model": "broken-model", "method": "magnitude", "sparsity": 0.5}
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 60)
    assert done["state"] == "failed", done
    assert done["error"]["type"] and done["error"]["message"]
    assert "Traceback" not in done["error"]["message"]
    assert not (live_service.artifacts_dir / "jobs" / job["id"]).exists()


def test_the_worker_log_names_each_job_and_its_error_without_bars_or_task_results(live_service):
    from tests.support.live_service import TINY_MODEL

    no_weights = live_service.models_dir / "no-weights"
    no_weights.mkdir(exist_ok=True)
    (no_weights / "config.json").write_text('{"model_type": "llama"}')
    job = {
        "method": "wanda",
        "sparsity": "2:4",
        "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
    }
    specs = [{**job, "model": "no-weights"}, {**job, "model": TINY_MODEL}]
    live_service.ensure_worker()
    with live_service.client() as c:
        bad, good = (c.post("/v1/jobs", json=s).raise_for_status().json()["id"] for s in specs)
        for job_id in (bad, good):
            live_service.wait_job(c, job_id, ("succeeded", "failed", "cancelled"), 120)
    log = (live_service.root / f"worker-{live_service.worker_starts}.log").read_text()
    assert re.search(rf"ERROR/\S+\] job {bad} \[load\] failed: ModelLoadError: \S", log)
    assert f"job {good} [load] started" in log and f"job {good} [save] succeeded" in log
    assert "Traceback" not in log  # at debug level only
    assert " succeeded in " not in log  # Celery's line, which called the failed job succeeded
    assert "Loading weights" not in log and "it/s]" not in log  # no progress bars


def _make_slow_model(out):
    import torch
    import transformers

    from tests.support.tiny_models import VOCAB, save_tokenizer

    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(out)
