"""Fixtures for the client and CLI tests: a PruneClient on the live service, a tiny job spec,
one succeeded job shared by the download tests, and a fault-injecting proxy.
"""

from __future__ import annotations

import pytest

from clients.client import PruneClient
from service.schemas import JobPublic
from tests.clients.faulty_proxy import FaultyProxy
from tests.support.live_service import TINY_MODEL

# Tiny on purpose: a job takes a few seconds on 2 CPU cores.
TINY_SPEC = {
    "model": TINY_MODEL,
    "method": "wanda",
    "sparsity": "2:4",
    "calibration": {"dataset": "wikitext2", "nsamples": 4, "seqlen": 32},
    "evaluation": {"dataset": "wikitext2", "seqlen": 32, "max_windows": 2},
}


@pytest.fixture
def client(live_service) -> PruneClient:
    live_service.ensure_worker()  # a kill test elsewhere may have left none
    with PruneClient(live_service.url, live_service.api_key, retries=2, backoff=0.05) as c:
        yield c


@pytest.fixture(scope="session")
def done_job(live_service) -> JobPublic:
    """One succeeded tiny job, calibrated on an uploaded text file (covers upload too)."""
    live_service.ensure_worker()
    with PruneClient(live_service.url, live_service.api_key) as c:
        text = (live_service.data_dir / "wikitext-2-raw" / "valid.txt").read_bytes()
        upload = live_service.root / "calibration.txt"
        upload.write_bytes(text[:20_000])
        dataset = c.upload_dataset(upload)
        spec = {**TINY_SPEC, "calibration": {**TINY_SPEC["calibration"]}}
        spec["calibration"]["dataset"] = f"upload:{dataset.id}"
        job = c.submit(spec)
        return c.wait(job.id, timeout=180, poll=0.3)


@pytest.fixture
def proxy(live_service) -> FaultyProxy:
    p = FaultyProxy(live_service.url).start()
    yield p
    p.close()


@pytest.fixture
def proxied(live_service, proxy) -> PruneClient:
    """A client whose every request goes through `proxy` (so faults can be injected)."""
    with PruneClient(proxy.url, live_service.api_key, retries=2, backoff=0.05) as c:
        yield c
