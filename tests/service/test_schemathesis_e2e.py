"""Schemathesis against the live api: every check but positive_data_acceptance, bounded
examples, 0 failures. (Schema-valid specs rightly get 422 for a model that is not there, so
"valid data is accepted" cannot hold for this API; every other check must.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
TIME_BOUND_S = 100
REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "model": TINY_MODEL,
    "method": "magnitude",
    "sparsity": 0.5,
    "calibration": {"nsamples": 2, "seqlen": 16},
}


@pytest.fixture(scope="module")
def done_job(live_service):
    """A succeeded job, so schemathesis reaches real jobs and artifacts (ids from GET /v1/jobs)."""
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        return live_service.wait_job(c, job["id"], ("succeeded",))


def test_openapi_holds_under_schemathesis(live_service, done_job, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live_service.url}/openapi.json",
        "-H",
        f"Authorization: Bearer {live_service.api_key}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "15",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "20",
        "--seed",
        "1",
        "--no-color",
    ]
    before = _caches_in_checkout()
    # its cache (.schemathesis/) goes to the working directory: a temporary one, not the checkout
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_BOUND_S, cwd=tmp_path)
    assert _caches_in_checkout() == before
    summary = r.stdout[-4000:]
    assert r.returncode == 0, summary + r.stderr[-2000:]
    cases = re.search(r"Test cases:\s*\n\s*(.*)", summary)
    assert cases and " passed" in cases.group(1), summary
    assert not re.search(r"\d+ (failed|errored)", cases.group(1)), summary


def _caches_in_checkout() -> list[tuple[str, int]]:
    found = [p for d in (".schemathesis", ".hypothesis") for p in (REPO / d).rglob("*")]
    return sorted((str(p), p.stat().st_mtime_ns) for p in found)
