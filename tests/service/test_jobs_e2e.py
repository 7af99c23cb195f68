"""End to end over real HTTP, Redis and a Celery worker: submit, progress, download, verify."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time

import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {
    "model": TINY_MODEL,
    "method": "wanda",
    "sparsity": "2:4",
    "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
}


@pytest.fixture(scope="module")
def finished(live_service):
    """One 2:4 Wanda job, with every progress snapshot seen while polling."""
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        assert job["state"] == "queued"
        seen, deadline = [], time.monotonic() + 120
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            job = c.get(f"/v1/jobs/{job['id']}").json()
            seen.append((job["state"], job["progress"]))
            time.sleep(0.05)
    return job, seen


def test_job_succeeds_with_progress_and_summary(live_service, finished):
    job, seen = finished
    assert job["state"] == "succeeded", job["error"]
    assert job["attempts"] == 1 and job["started_at"] and job["finished_at"]
    assert any(state == "running" for state, _ in seen)
    assert job["progress"]["percent"] == 100.0 and job["progress"]["n_layers"] == 2
    assert job["summary"]["sparsity"] == pytest.approx(0.5) and job["summary"]["nm_ok"] is True
    with live_service.client() as c:
        events = c.get(f"/v1/jobs/{job['id']}/events").json()
    messages = [(e["kind"], e["message"]) for e in events]
    assert ("stage", "prune") in messages and ("layer", "layer 2/2") in messages
    assert messages[-1] == ("state", "succeeded")


def test_download_every_artifact_and_verify_checkpoint(live_service, finished, tmp_path):
    job, _ = finished
    out = tmp_path / "ckpt"
    out.mkdir()
    with live_service.client() as c:
        items = c.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]
        names = {a["path"] for a in items}
        assert {"model.safetensors", "config.json", "pruning_report.json"} <= names
        for a in items:
            r = c.get(f"/v1/jobs/{job['id']}/artifacts/{a['path']}")
            assert r.status_code == 200 and len(r.content) == a["size"]
            assert hashlib.sha256(r.content).hexdigest() == a["sha256"]
            assert r.headers["etag"] == f'"{a["sha256"]}"'
            (out / a["path"]).write_bytes(r.content)
    _assert_2_4(out)


def test_range_etag_and_archive(live_service, finished):
    job, _ = finished
    base = f"/v1/jobs/{job['id']}"
    with live_service.client() as c:
        items = {a["path"]: a for a in c.get(f"{base}/artifacts").json()["items"]}
        full = c.get(f"{base}/artifacts/model.safetensors").content
        part = c.get(f"{base}/artifacts/model.safetensors", headers={"Range": "bytes=100-299"})
        assert part.status_code == 206 and part.content == full[100:300]
        etag = f'"{items["model.safetensors"]["sha256"]}"'
        cached = c.get(f"{base}/artifacts/model.safetensors", headers={"If-None-Match": etag})
        assert cached.status_code == 304
        archive = c.get(f"{base}/archive")
        assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        for member in tar.getmembers():
            path = member.name.split("/", 1)[1]
            data = tar.extractfile(member).read()
            assert hashlib.sha256(data).hexdigest() == items.pop(path)["sha256"]
    assert items == {}


def test_list_cursor_state_filter_and_idempotency(live_service, finished):
    job, _ = finished
    with live_service.client() as c:
        headers = {"Idempotency-Key": "abc-123"}
        spec = {**SPEC, "method": "magnitude"}
        first = c.post("/v1/jobs", json=spec, headers=headers).json()
        again = c.post("/v1/jobs", json=spec, headers=headers)
        assert again.status_code == 202 and again.json()["id"] == first["id"]
        other = c.post("/v1/jobs", json=SPEC, headers=headers)
        assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
        live_service.wait_job(c, first["id"], ("succeeded",))
        page1 = c.get("/v1/jobs", params={"limit": 1}).json()
        assert page1["items"][0]["id"] == first["id"] and page1["next_cursor"]
        page2 = c.get("/v1/jobs", params={"limit": 1, "cursor": page1["next_cursor"]}).json()
        assert page2["items"][0]["created_at"] <= page1["items"][0]["created_at"]
        ids = [j["id"] for j in c.get("/v1/jobs", params={"state": "succeeded"}).json()["items"]]
        assert job["id"] in ids and first["id"] in ids
        assert c.get("/v1/jobs", params={"state": "queued"}).json()["items"] == []


def test_upload_dataset_and_calibrate_on_it(live_service):
    text = (live_service.data_dir / "wikitext-2-raw" / "valid.txt").read_bytes()[:20000]
    with live_service.client() as c:
        r = c.post("/v1/datasets", files={"file": ("cal.txt", text, "text/plain")})
        assert r.status_code == 201, r.text
        ds = r.json()
        assert ds["size"] == len(text) and ds["sha256"] == hashlib.sha256(text).hexdigest()
        spec = {**SPEC, "calibration": {**SPEC["calibration"], "dataset": f"upload:{ds['id']}"}}
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed"))
        assert done["state"] == "succeeded", done["error"]
    with live_service.client(live_service.other_api_key) as other:
        r = other.post("/v1/jobs", json=spec)
        assert r.status_code == 422 and r.json()["field"] == "calibration.dataset"


def test_upload_limits(live_service):
    with live_service.client() as c:
        r = c.post("/v1/datasets", files={"file": ("x.exe", b"MZ", "application/octet-stream")})
        assert r.status_code == 422 and ".txt and .jsonl" in r.json()["detail"]
        r = c.post("/v1/datasets", files={"file": ("x.jsonl", b'{"nottext": 1}\n')})
        assert r.status_code == 422 and "text" in r.json()["detail"]
        big = b"a" * (1024 * 1024 + 1)
        r = c.post("/v1/datasets", files={"file": ("big.txt", big, "text/plain")})
        assert r.status_code == 413 and "limit" in r.json()["detail"]


def test_health_ready_metrics(live_service, finished):
    import httpx

    assert httpx.get(f"{live_service.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{live_service.url}/readyz").json() == {"status": "ready"}
    token = {"Authorization": f"Bearer {live_service.metrics_token}"}
    text = httpx.get(f"{live_service.url}/metrics", headers=token).text
    line = next(x for x in text.splitlines() if x.startswith('pruneserve_jobs{state="succeeded"}'))
    assert float(line.split()[-1]) >= 1
    assert "pruneserve_queue_depth" in text
    assert 'pruneserve_job_duration_seconds_count{state="succeeded"}' in text


def _assert_2_4(path):
    """Every pruned Linear has at least 2 zeros in each group of 4 consecutive inputs."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    checked = 0
    for name, module in model.model.layers.named_modules():
        if isinstance(module, torch.nn.Linear):
            w = module.weight.detach()
            groups = (w.reshape(w.shape[0], -1, 4) == 0).sum(-1)
            assert (groups >= 2).all(), name
            checked += 1
    assert checked == 2 * 7
    assert model.lm_head.weight.count_nonzero() == model.lm_head.weight.numel()


def test_owl_and_dsnot_job_and_what_the_api_refuses(live_service):
    spec = {
        **SPEC,
        "sparsity": 0.6,
        "sparsity_profile": "owl",
        "owl": {"m": 2, "lam": 0.05},
        "refine": "dsnot",
    }
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**spec, "sparsity": "2:4"})
        assert r.status_code == 422 and r.json()["field"] == "sparsity_profile"
        assert "N:M (2:4) stays uniform" in r.json()["detail"]
        r = c.post("/v1/jobs", json={**SPEC, "method": "smp", "refine": "dsnot"})
        assert r.status_code == 422 and r.json()["field"] == "refine"
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed"))
        assert done["state"] == "succeeded", done["error"]
        report = c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").json()
    assert [x["index"] for x in report["layers"]] == [0, 1]
    assert all(0.55 - 1e-9 <= x["sparsity"] <= 0.65 + 1e-9 for x in report["layers"])
    assert sum(m["dsnot_swaps"] for m in report["modules"]) > 0


@pytest.mark.parametrize("field", ["training", "recovery"])
def test_a_training_dataset_is_a_named_corpus_or_the_tenants_upload(live_service, field):
    method = "gmp" if field == "training" else "wanda"
    for bad in ("/etc/passwd", "../../etc/hosts.txt", "upload:0123456789abcdef"):
        spec = {**SPEC, "method": method, field: {"dataset": bad, "steps": 2}}
        with live_service.client() as c:
            r = c.post("/v1/jobs", json=spec)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == f"{field}.dataset" and "unknown dataset" in r.json()["detail"]
