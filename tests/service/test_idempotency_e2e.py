"""Idempotency-Key under load, over real HTTP: many submits with one key make one job."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
ROUNDS = 10
SPEC = {
    "model": TINY_MODEL,
    "method": "magnitude",
    "sparsity": 0.5,
    "calibration": {"dataset": "wikitext2", "nsamples": 1, "seqlen": 8},
}


async def _submit_together(svc, key: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {**svc.headers(), "Idempotency-Key": key}
    async with httpx.AsyncClient(base_url=svc.url, limits=limits, timeout=60) as c:
        return await asyncio.gather(
            *(c.post("/v1/jobs", json=SPEC, headers=headers) for _ in range(n))
        )


def test_fifty_concurrent_submits_with_one_key_all_get_the_one_job(live_service):
    job_ids = []
    for round_ in range(ROUNDS):  # the race is narrow: give it several chances
        responses = asyncio.run(_submit_together(live_service, f"one-key-{round_}", 50))
        refused = [r.text for r in responses if r.status_code != 202]
        assert refused == [], f"round {round_}: {len(refused)} of 50 refused: {refused[0]}"
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1, f"round {round_}: {len(ids)} jobs for one key"
        job_ids += ids
    with live_service.client() as c:
        for job_id in job_ids[1:]:
            c.post(f"/v1/jobs/{job_id}/cancel")  # spare the worker; one run is enough
        job = live_service.wait_job(c, job_ids[0], ("succeeded", "failed"))
        assert job["state"] == "succeeded", job["error"]
        states = [e["message"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()]
        assert states.count("queued") == 1 and states.count("running (attempt 1)") == 1
