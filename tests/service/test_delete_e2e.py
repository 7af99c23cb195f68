"""DELETE /v1/jobs/{id} over real HTTP, with a real worker and Redis: a job's files, record,
events and index entries go, a repeat is 204, another tenant's job is answered as an unknown
id and left intact, a running job stops and leaves nothing, and the worker's retention sweep
deletes jobs older than PRUNESERVE_ARTIFACT_TTL_DAYS."""

from __future__ import annotations

import time

import pytest
import redis

from tests.service.test_access_e2e import SPEC  # a tiny magnitude job
from tests.worker.test_tasks_e2e import SLOW_MODEL, _make_slow_model

pytestmark = pytest.mark.e2e
ENDED = ("succeeded", "failed", "cancelled")


def _finished(svc, c, **headers) -> dict:
    job = c.post("/v1/jobs", json=SPEC, headers=headers).raise_for_status().json()
    return svc.wait_job(c, job["id"], ("succeeded",))


def _leftovers(svc, job_id: str) -> list[str]:
    """Everything still naming the job: files, Redis keys, set and sorted-set members (its
    tombstone, which answers a repeated DELETE, aside)."""
    r = redis.Redis.from_url(svc.redis_url)
    found = [p.name for p in (svc.artifacts_dir / "jobs").glob(f"{job_id}*")]
    for raw in r.scan_iter(count=1000):
        key = raw.decode()
        kind = r.type(raw).decode()
        if job_id in key and key != f"ps:gone:{job_id}":
            found.append(key)
        elif kind in ("set", "zset") and _member(r, raw, kind, job_id):
            found.append(f"{key} member")
    return found


def _member(r: redis.Redis, key: bytes, kind: str, job_id: str) -> bool:
    return bool(r.sismember(key, job_id) if kind == "set" else r.zscore(key, job_id) is not None)


def test_delete_a_finished_job_removes_it_and_a_repeat_is_204(live_service):
    live_service.ensure_worker()
    with live_service.client() as c:
        job = _finished(live_service, c, **{"Idempotency-Key": "delete-me"})
        assert (live_service.artifacts_dir / "jobs" / job["id"] / "config.json").is_file()
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert (r.status_code, r.content) == (204, b"")
        for path in ("", "/events", "/artifacts", "/artifacts/config.json", "/archive"):
            assert c.get(f"/v1/jobs/{job['id']}{path}").status_code == 404, path
        assert job["id"] not in [j["id"] for j in c.get("/v1/jobs").json()["items"]]
        assert _leftovers(live_service, job["id"]) == []
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        # the Idempotency-Key went with the job: the same key submits a new one
        again = c.post("/v1/jobs", json=SPEC, headers={"Idempotency-Key": "delete-me"})
        assert again.status_code == 202 and again.json()["id"] != job["id"]
        live_service.wait_job(c, again.json()["id"], ENDED)


def test_another_tenants_delete_is_answered_as_an_unknown_id(live_service):
    live_service.ensure_worker()
    unknown = "0" * 32
    with live_service.client() as owner, live_service.client(live_service.other_api_key) as bob:
        job = _finished(live_service, owner)
        base = f"/v1/jobs/{job['id']}"
        theirs, missing = bob.delete(base), bob.delete(f"/v1/jobs/{unknown}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.content == missing.content.replace(unknown.encode(), job["id"].encode())
        assert theirs.content == bob.get(base).content  # as every other path answers it
        assert owner.get(base).json()["state"] == "succeeded"
        assert owner.get(base + "/artifacts/config.json").status_code == 200
        assert owner.delete(base).status_code == 204
        assert bob.delete(base).content == theirs.content  # the tombstone is the owner's only


def test_delete_a_running_job_stops_it_and_leaves_nothing(live_service):
    live_service.ensure_worker()
    if not (live_service.models_dir / SLOW_MODEL).exists():
        _make_slow_model(live_service.models_dir / SLOW_MODEL)
    slow = {
        "model": SLOW_MODEL,
        "method": "sparsegpt",
        "sparsity": "2:4",
        "calibration": {"dataset": "wikitext2", "nsamples": 32, "seqlen": 128},
        "checkpoint_layers": 1,
    }
    with live_service.client() as c:
        running = c.post("/v1/jobs", json=slow).raise_for_status().json()
        queued = c.post("/v1/jobs", json=slow).raise_for_status().json()
        _wait_pruning(c, running["id"])
        assert c.delete(f"/v1/jobs/{queued['id']}").status_code == 204
        assert c.delete(f"/v1/jobs/{running['id']}").status_code == 204
        assert c.get(f"/v1/jobs/{running['id']}").status_code == 404
        # one worker, one job at a time: the next job runs once the deleted ones have ended
        after = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        assert live_service.wait_job(c, after["id"], ENDED)["state"] == "succeeded"
    for job in (running, queued):
        assert _leftovers(live_service, job["id"]) == [], job["id"]


def test_the_worker_deletes_jobs_older_than_the_retention(live_service):
    live_service.stop_worker()
    live_service.start_worker(ARTIFACT_TTL_DAYS="0.00004", RETENTION_SWEEP_S="0.5")  # ~3.5 s
    try:
        with live_service.client() as c:
            job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
            seen, deadline = [], time.monotonic() + 120
            while (r := c.get(f"/v1/jobs/{job['id']}")).status_code == 200:
                seen.append(r.json()["state"])
                assert time.monotonic() < deadline, f"never deleted: {seen[-3:]}"
                time.sleep(0.2)
            assert seen[-1] == "succeeded", seen  # queued and running jobs never expire
            assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204  # deleted, not lost
    finally:
        live_service.stop_worker()
        live_service.start_worker()
    assert _leftovers(live_service, job["id"]) == []
    live_service.wait_ready()


def _wait_pruning(c, job_id: str, timeout: float = 90) -> None:
    """Until the job is inside the prune stage, past its first layer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] in ("queued", "running"), job
        if job["progress"]["stage"] == "prune" and job["progress"]["layer"] >= 1:
            return
        time.sleep(0.1)
    raise TimeoutError(job_id)


def test_openapi_documents_delete_as_204_without_a_body(live_service):
    with live_service.client() as c:
        doc = c.get("/openapi.json").json()
    responses = doc["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert (
        "content" not in responses["204"] and "already deleted" in responses["204"]["description"]
    )
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
