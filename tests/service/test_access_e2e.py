"""Auth, tenant isolation, 422s naming the field, and path traversal, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {
    "model": TINY_MODEL,
    "method": "magnitude",
    "sparsity": 0.5,
    "calibration": {"nsamples": 4, "seqlen": 32},
}


@pytest.fixture(scope="module")
def done_job(live_service):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        return live_service.wait_job(c, job["id"], ("succeeded",))


def test_no_or_bad_key_is_401(live_service):
    r = httpx.get(f"{live_service.url}/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in r.json()["detail"]
    r = httpx.post(f"{live_service.url}/v1/jobs", json=SPEC, headers=live_service.headers("x" * 32))
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"


def test_other_tenant_gets_404_for_job_and_files(live_service, done_job):
    base = f"/v1/jobs/{done_job['id']}"
    with live_service.client(live_service.other_api_key) as other:
        for path in ("", "/events", "/artifacts", "/artifacts/config.json", "/archive"):
            assert other.get(base + path).status_code == 404, path
        assert other.post(base + "/cancel").status_code == 404
        assert done_job["id"] not in [j["id"] for j in other.get("/v1/jobs").json()["items"]]
    with live_service.client() as owner:
        assert owner.get(base + "/artifacts/config.json").status_code == 200
        assert owner.post(base + "/cancel").status_code == 409


@pytest.mark.parametrize(
    ("patch", "field", "says"),
    [
        ({"method": "prune-it"}, "method", "allowed: magnitude, wanda, sparsegpt"),
        ({"sparsity": "3:2"}, "sparsity", "need 0 < N < M"),
        ({"sparsity": "2:5"}, "sparsity", "M must be a power of two from 2 to 32"),
        ({"sparsity": "1:1000"}, "sparsity", "M must be a power of two from 2 to 32"),
        ({"sparsity": "1:64"}, "sparsity", "M must be a power of two from 2 to 32"),
        (
            {"sparsity_profile": "owl", "owl": {"samples": 8}},
            "owl.samples",
            "more than calibration.nsamples (4)",
        ),
        ({"sparsity": 1.5}, "sparsity", "out of range"),
        ({"calibration": {"nsamples": 4096, "seqlen": 2048}}, "calibration.nsamples", "limit"),
        (
            {"recovery": {"steps": 100_000, "batch_size": 64, "micro_batch": 64, "seqlen": 256}},
            "recovery.steps",
            "PRUNESERVE_MAX_TRAIN_TOKENS",
        ),
        ({"recovery": {"steps": 1, "precision": "fp16"}}, "recovery.precision", "'bf16'"),
        ({"calibration": {"dataset": "imagenet"}}, "calibration.dataset", "allowed: wikitext2"),
        ({"calibration": {"dataset": "upload:nope"}}, "calibration.dataset", "upload:<id>"),
        ({"evaluation": {"dataset": "/etc/passwd"}}, "evaluation.dataset", "allowed"),
        ({"model": "no-such-model"}, "model", "tiny-llama"),
        ({"device": "tpu"}, "device", "allowed"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_bad_input_is_422_naming_the_field(live_service, patch, field, says):
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**SPEC, **patch})
    body = r.json()
    assert r.status_code == 422, body
    assert body["field"] == field and says in body["detail"], body
    assert body["detail"].startswith(f"{field}:")


@pytest.mark.parametrize(
    "model", ["../models/tiny-llama", "/etc", "..", "tiny-llama/../..", "a\\b", "escape", "~root"]
)
def test_model_paths_are_refused(live_service, model, tmp_path_factory):
    link = live_service.models_dir / "escape"
    if not link.exists():
        outside = tmp_path_factory.mktemp("outside")
        (outside / "config.json").write_text("{}")
        link.symlink_to(outside)
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**SPEC, "model": model})
    assert r.status_code == 422 and r.json()["field"] == "model", r.text


@pytest.mark.parametrize(
    "path",
    [
        "../../secret.txt",
        "..%2F..%2Fsecret.txt",
        "%2e%2e/%2e%2e/secret.txt",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "..%5C..%5Csecret.txt",
        "config.json/../../../secret.txt",
    ],
)
def test_artifact_path_traversal_never_leaves_the_job(live_service, done_job, path):
    (live_service.artifacts_dir / "jobs" / "secret.txt").write_text("TOP-SECRET")
    (live_service.artifacts_dir / "secret.txt").write_text("TOP-SECRET")
    url = f"{live_service.url}/v1/jobs/{done_job['id']}/artifacts/{path}"
    r = httpx.get(url, headers=live_service.headers())
    assert r.status_code in (404, 422), (path, r.status_code)
    assert "TOP-SECRET" not in r.text
