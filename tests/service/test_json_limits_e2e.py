"""Deeply nested or over-long JSON from clients, over real HTTP: named in a 422, never a 500
or a misleading "not valid UTF-8" (job bodies and .jsonl uploads alike)."""

from __future__ import annotations

import pytest

from service.json_limits import MAX_JSON_DEPTH
from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
DEEP = "[" * 5000 + "]" * 5000


def post_raw(svc, body: bytes):
    with svc.client() as c:
        return c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})


def test_a_job_body_nested_5000_deep_names_the_nesting(live_service):
    body = '{"model": "%s", "method": "magnitude", "sparsity": 0.5, "options": {"x": %s}}'
    r = post_raw(live_service, (body % (TINY_MODEL, DEEP)).encode())
    assert r.status_code == 422 and r.json()["field"] == "body", r.text
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in r.json()["detail"], r.text
    assert "UTF-8" not in r.json()["detail"]


def test_a_job_body_with_a_5000_digit_integer_names_the_integer(live_service):
    body = '{"model": "%s", "method": "magnitude", "sparsity": 0.5, "calibration": {"seed": %s}}'
    r = post_raw(live_service, (body % (TINY_MODEL, "7" * 5000)).encode())
    assert r.status_code == 422 and r.json()["field"] == "body", r.text
    assert "integer with more than 4300 digits" in r.json()["detail"], r.text


def test_a_deeply_nested_jsonl_line_is_422_naming_the_line(live_service):
    lines = ['{"text": "fine"}', '{"text":"a","x":' + "[" * 100_000 + "]" * 100_000 + "}"]
    log = live_service.root / "api.log"
    before = log.stat().st_size
    with live_service.client() as c:
        r = c.post("/v1/datasets", files={"file": ("deep.jsonl", "\n".join(lines).encode())})
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    assert r.json()["detail"].startswith("line 2:") and "nested deeper" in r.json()["detail"]
    with log.open("rb") as f:
        f.seek(before)
        assert b"RecursionError" not in f.read()
