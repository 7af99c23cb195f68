"""Training stages through the real service: per-step progress, cancel mid-training leaves
nothing behind, and a SIGKILLed worker's job resumes from its training checkpoint."""

from __future__ import annotations

import json
import time

import pytest

from tests.worker.test_tasks_e2e import SLOW_MODEL, _make_slow_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def train_spec(live_service):
    path = live_service.models_dir / SLOW_MODEL
    if not path.exists():
        _make_slow_model(path)

    def make(steps: int, every: int = 5) -> dict:
        return {
            "model": SLOW_MODEL,
            "method": "wanda",
            "sparsity": "2:4",
            "calibration": {"dataset": "wikitext2", "nsamples": 8, "seqlen": 64},
            "recovery": {
                "dataset": "wikitext2",
                "steps": steps,
                "seqlen": 64,
                "batch_size": 2,
                "checkpoint_every": every,
                "lr": 1e-3,
            },
        }

    return make


def _wait_step(c, job_id, at_least: int, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        p = job["progress"]
        if p["stage"] == "recover" and p["step"] >= at_least:
            return job
        time.sleep(0.05)
    raise TimeoutError(job)


def _files_left(svc, job_id) -> list[str]:
    jobs = svc.artifacts_dir / "jobs"
    return [p.name for p in jobs.glob(f"{job_id}*")]


def test_recovery_job_shows_steps_and_reports_the_training(live_service, train_spec):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=train_spec(12)).raise_for_status().json()
        running = _wait_step(c, job["id"], 1)
        p = running["progress"]
        assert p["n_steps"] == 12 and p["loss"] is not None and p["step"] <= 12
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 600)
        assert done["state"] == "succeeded", done
        report = json.loads(c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").content)
    [tr] = report["training"]
    assert tr["stage"] == "recover" and len(tr["loss"]) == 12 and tr["resumed_from_step"] == 0
    assert report["nm_ok"] is True
    assert _files_left(live_service, job["id"]) == [job["id"]]  # no .partial, no .resume


def test_cancel_during_training_leaves_nothing(live_service, train_spec):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=train_spec(5000)).raise_for_status().json()
        _wait_step(c, job["id"], 7)  # past a checkpoint
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        done = live_service.wait_job(c, job["id"], ("cancelled", "succeeded", "failed"), 60)
        assert done["state"] == "cancelled", done
    assert _files_left(live_service, job["id"]) == []


def test_killed_worker_resumes_training_from_its_checkpoint(live_service, train_spec):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=train_spec(20)).raise_for_status().json()
        _wait_step(c, job["id"], 7)  # checkpoint at step 5 written
        live_service.kill_worker()
        live_service.start_worker()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 600)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2
        report = json.loads(c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").content)
    [tr] = report["training"]
    assert tr["resumed_from_step"] >= 5 and len(tr["loss"]) == 20
    assert _files_left(live_service, job["id"]) == [job["id"]]


def test_movement_job_on_an_uploaded_dataset_reports_held_out_perplexity(live_service):
    from tests.support.live_service import TINY_MODEL

    text = (live_service.data_dir / "wikitext-2-raw" / "valid.txt").read_bytes()[:60000]
    with live_service.client() as c:
        ds = c.post("/v1/datasets", files={"file": ("domain.txt", text, "text/plain")}).json()
        spec = {
            "model": TINY_MODEL,
            "method": "movement",
            "sparsity": "2:4",
            "training": {
                "dataset": f"upload:{ds['id']}",
                "steps": 6,
                "seqlen": 32,
                "batch_size": 2,
                "lr": 1e-3,
                "prune_every": 1,
            },
            "evaluation": {"dataset": "wikitext2", "seqlen": 32, "max_windows": 4},
        }
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed"))
        assert done["state"] == "succeeded", done["error"]
        report = c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").json()
    assert report["nm_ok"] is True and report["sparsity"] == 0.5
    assert report["training"][0]["stage"] == "train" and len(report["training"][0]["loss"]) == 6
    held = report["heldout"]
    assert held["dataset"].startswith(f"upload:{ds['id']} (held-out 10%")
    assert held["dense"] > 0 and held["pruned"] > 0
    assert report["perplexity"]["dataset"] == "wikitext2" and report["perplexity"]["pruned"] > 0
