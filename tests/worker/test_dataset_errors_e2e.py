"""A corpus the worker cannot find fails the job with an error that names the spec field it
came from (its value may be a default the user never typed)."""

from __future__ import annotations

import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e


def test_a_missing_corpus_fails_the_job_naming_its_field(live_service):
    spec = {
        "model": TINY_MODEL,
        "method": "magnitude",
        "sparsity": 0.5,
        "recovery": {"dataset": "c4", "steps": 2},
    }
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"))
    assert done["state"] == "failed" and done["error"]["type"] == "CalibrationError", done
    message = done["error"]["message"]
    assert message.startswith("recovery.dataset: dataset 'c4': "), message
    assert "c4-train" in message and str(live_service.data_dir) not in message
