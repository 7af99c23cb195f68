"""Health endpoints tell strangers only up / not up; /metrics needs PRUNESERVE_METRICS_TOKEN."""

from __future__ import annotations

import httpx
import pytest

from tests.service.api_process import api_process

pytestmark = pytest.mark.e2e


def test_readyz_shows_no_worker_names_or_counts(live_service):
    r = httpx.get(f"{live_service.url}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-0123456789", "api_key"])
def test_metrics_refuse_callers_without_the_token(live_service, auth):
    headers = {}
    if auth == "api_key":
        headers = live_service.headers()  # a tenant's API key is not the metrics token
    elif auth:
        headers = {"Authorization": auth}
    r = httpx.get(f"{live_service.url}/metrics", headers=headers)
    assert r.status_code == 401 and "metrics token" in r.json()["detail"], r.text
    assert "pruneserve_jobs" not in r.text


def test_metrics_with_the_token_are_prometheus_text(live_service):
    token = {"Authorization": f"Bearer {live_service.metrics_token}"}
    r = httpx.get(f"{live_service.url}/metrics", headers=token)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "pruneserve_queue_depth" in r.text


def test_metrics_are_404_when_no_token_is_configured(live_service, tmp_path):
    with api_process(live_service, tmp_path, METRICS_TOKEN="") as url:
        r = httpx.get(url + "/metrics", headers={"Authorization": "Bearer x"})
    assert r.status_code == 404 and "PRUNESERVE_METRICS_TOKEN" in r.json()["detail"]
