"""Block-wise reconstruction through the real service: what the API refuses, per-block
progress (epoch and loss) in the job's events, the report's per-block losses and perplexity,
recovery after it; a cancel mid-reconstruction leaves nothing behind."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.live_service import TINY_MODEL
from tests.worker.test_tasks_e2e import SLOW_MODEL, _make_slow_model

pytestmark = pytest.mark.e2e


def test_a_job_with_reconstruction_and_recovery_reports_every_block(live_service):
    spec = {
        "reconstruction": {"epochs": 2, "lr": 1e-3},
        "recovery": {"dataset": "wikitext2", "steps": 2, "seqlen": 32, "batch_size": 2},
        "model": TINY_MODEL,
        "method": "sparsegpt",
        "sparsity": "2:4",
        "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
        "evaluation": {"dataset": "wikitext2", "seqlen": 32, "max_windows": 2},
    }
    bad = [
        ({"epochs": 1, "target": "teacher"}, "reconstruction.target", "allowed: pruned_input"),
        ({"epochs": 1, "batch_size": 5}, "reconstruction.batch_size", "calibration.nsamples"),
    ]
    with live_service.client() as c:
        for rc, field, words in bad:
            r = c.post("/v1/jobs", json={**spec, "reconstruction": rc})
            assert r.status_code == 422 and r.json()["field"] == field, r.text
            assert words in r.json()["detail"]
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 300)
        assert done["state"] == "succeeded", done
        events = c.get(f"/v1/jobs/{job['id']}/events").json()
        report = json.loads(c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").content)
    per_block = [e["message"] for e in events if "reconstruction epoch" in e["message"]]
    assert [m.split(":")[0] for m in per_block] == ["layer 1/2"] * 2 + ["layer 2/2"] * 2
    assert all(", loss " in m for m in per_block)
    blocks = report["reconstruction"]
    assert [b["layer"] for b in blocks] == [0, 1]
    assert all(b["loss_after"] < b["loss_before"] for b in blocks)
    assert set(report["perplexity"]["after"]) == {"reconstruct", "recover"}
    assert report["nm_ok"] is True and [t["stage"] for t in report["training"]] == ["recover"]


def test_cancel_mid_reconstruction_leaves_nothing(live_service):
    path = live_service.models_dir / SLOW_MODEL
    if not path.exists():
        _make_slow_model(path)
    spec = {
        "model": SLOW_MODEL,
        "method": "wanda",
        "sparsity": "2:4",
        "calibration": {"dataset": "wikitext2", "nsamples": 8, "seqlen": 64},
        "reconstruction": {"epochs": 1000},
    }
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            p = c.get(f"/v1/jobs/{job['id']}").json()["progress"]
            if "reconstruction epoch 2/" in (p["message"] or ""):
                break
            time.sleep(0.1)
        assert p["loss"] is not None, p
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
        done = live_service.wait_job(c, job["id"], ("cancelled", "succeeded", "failed"), 60)
        assert done["state"] == "cancelled", done
    assert [p.name for p in (live_service.artifacts_dir / "jobs").glob(f"{job['id']}*")] == []
