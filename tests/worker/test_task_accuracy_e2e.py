"""Task accuracy through the real service: a local lm-evaluation-harness task (the shipped
multiple-choice task) runs on the dense and the pruned model, and its accuracy with its
standard error lands in the report; a task given as a path is refused at the boundary."""

from __future__ import annotations

import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e


def test_a_local_task_runs_dense_and_pruned_and_lands_in_the_report(live_service):
    spec = {
        "model": TINY_MODEL,
        "method": "magnitude",
        "sparsity": 0.5,
        "evaluation": {
            "dataset": "wikitext2",
            "seqlen": 32,
            "max_windows": 2,
            "tasks": ["pruneserve_facts"],
            "task_limit": 6,
        },
    }
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 180)
        assert done["state"] == "succeeded", done
        report = c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").json()
    (task,) = report["tasks"]
    assert task["task"] == "pruneserve_facts" and task["samples"] == 6
    assert task["source"] == "local task directory pruneserve_facts"
    for side in ("dense", "pruned"):
        acc, stderr = task[side]["acc"], task[side]["acc_stderr"]
        assert acc in {k / 6 for k in range(7)} and 0 <= stderr <= 0.5
    assert "eval_tasks_dense" in report["stages_s"] and "eval_tasks" in report["stages_s"]
    assert done["summary"]["tasks"]["pruneserve_facts"]["pruned"] == task["pruned"]["acc"]


def test_a_task_path_is_refused_with_the_field(live_service):
    spec = {
        "model": TINY_MODEL,
        "method": "magnitude",
        "sparsity": 0.5,
        "evaluation": {"tasks": ["/etc/lm_tasks"]},
    }
    with live_service.client() as c:
        r = c.post("/v1/jobs", json=spec)
    assert r.status_code == 422 and r.json()["field"] == "evaluation.tasks", r.text
    assert "a service job names its tasks" in r.json()["detail"]
