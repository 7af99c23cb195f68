"""A Redis outage longer than PRUNESERVE_REDIS_RETRY_S under a real Celery worker, whose
connections (job store and broker) go through a proxy that drops them at the job's write of
layer 2's event: the attempt stops with its checkpoint kept, and once Redis is back the
worker's own recovery sweep re-queues the job, which resumes at layer 2 as the same attempt."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from tests.support.redis_proxy import RedisProxy
from tests.support.tiny_models import make_tiny_model

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama4"


@pytest.fixture
def proxied_worker(live_service):
    """The service's worker replaced by one that reaches Redis only through a proxy."""
    url = urlparse(live_service.redis_url)
    proxy = RedisProxy((url.hostname, url.port))
    live_service.stop_worker()
    live_service.start_worker(
        REDIS_URL=f"redis://127.0.0.1:{proxy.port}{url.path}", REDIS_RETRY_S=1, MAX_ATTEMPTS=1
    )
    try:
        live_service.wait_ready()
        yield proxy
    finally:
        proxy.heal()
        live_service.stop_worker()
        live_service.start_worker()
        live_service.wait_ready()
        proxy.close()


def test_a_long_outage_resumes_the_job_without_using_an_attempt(live_service, proxied_worker):
    if not (live_service.models_dir / MODEL).exists():
        make_tiny_model("llama4", live_service.models_dir / MODEL)
    spec = {
        "model": MODEL,
        "method": "sparsegpt",
        "sparsity": "2:4",
        "checkpoint_layers": 1,
        "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
    }
    proxied_worker.cut_on(b"layer 2/4")
    with live_service.client() as c:
        job_id = c.post("/v1/jobs", json=spec).raise_for_status().json()["id"]
        note = live_service.artifacts_dir / "jobs" / f"{job_id}.resume" / "interrupted.json"
        deadline = time.monotonic() + 120
        while not note.exists():  # the worker gave up on Redis and left its note
            assert time.monotonic() < deadline, "the attempt was never interrupted"
            time.sleep(0.1)
        proxied_worker.heal()
        done = live_service.wait_job(c, job_id, ("succeeded", "failed", "cancelled"), 120)
        events = [e["message"] for e in c.get(f"/v1/jobs/{job_id}/events").json()]
    assert done["state"] == "succeeded", done
    assert (done["attempts"], done["summary"]["resumed_at_layer"]) == (1, 2)  # MAX_ATTEMPTS=1
    assert "the worker running this job was lost; re-queued" in events  # by the sweep
    assert any(m.startswith("running (attempt 1, again: Redis was unreachable") for m in events)
    assert [p.name for p in note.parent.parent.glob(f"{job_id}*")] == [job_id]
