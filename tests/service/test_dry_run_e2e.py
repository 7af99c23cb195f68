"""POST /v1/jobs with "dry_run": true over real HTTP and Redis: 200 with the plan, no job."""

from __future__ import annotations

import json

import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {"model": TINY_MODEL, "method": "wanda", "sparsity": "2:4", "dry_run": True}


def job_ids(c) -> list[str]:
    return [j["id"] for j in c.get("/v1/jobs", params={"limit": 100}).json()["items"]]


def test_dry_run_answers_the_plan_and_queues_nothing(live_service):
    with live_service.client() as c:
        before = job_ids(c)
        r = c.post("/v1/jobs", json={**SPEC, "plan_for": "1x24GiB", "recovery": {"steps": 5}})
        assert r.status_code == 200, r.text
        plan = r.json()
        assert job_ids(c) == before
    assert plan["fits"] is True and plan["devices"]["label"] == "1x24GiB"
    names = [s["name"] for s in plan["stages"]]
    assert names == ["load", "calibrate", "prune", "recover", "save"]
    peaks = {s["name"]: s["peak_bytes_per_device"] for s in plan["stages"]}
    assert peaks["recover"] > 0 and peaks["prune"] > 0


def test_dry_run_without_plan_for_plans_for_the_workers_devices(live_service):
    with live_service.client() as c:
        r = c.post("/v1/jobs", json=SPEC)
    assert r.status_code == 200 and r.json()["devices"]["label"] == "1x80GiB"


@pytest.mark.parametrize(
    ("patch", "field", "says"),
    [
        ({"model": "org/not-local"}, "model", "hub id with no local copy"),
        ({"plan_for": "8y80GiB"}, "plan_for", "pattern"),
    ],
)
def test_dry_run_refusals_are_422_naming_the_field(live_service, patch, field, says):
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**SPEC, **patch})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and says in r.json()["detail"]


def test_the_client_and_submit_dry_run_get_the_same_plan(live_service, capsys):
    from clients.cli.main import main
    from clients.client import PruneClient

    spec = {k: v for k, v in SPEC.items() if k != "dry_run"}
    with PruneClient(live_service.url, live_service.api_key) as client:
        before = len(client.list(limit=100).items)
        plan = client.plan(spec, plan_for="2x40GB")
        assert len(client.list(limit=100).items) == before
    assert plan.fits and plan.devices["count"] == 2
    argv = [
        "submit",
        "--url",
        live_service.url,
        "--api-key",
        live_service.api_key,
        "--json",
        "--model",
        TINY_MODEL,
        "--method",
        "wanda",
        "--sparsity",
        "2:4",
        "--dry-run",
        "--plan-for",
        "2x40GB",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == plan.model_dump(mode="json")
