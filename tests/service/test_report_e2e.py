"""A service job's outputs for people: model card and plots listed as artifacts, samples in
the report, `pruneserve report JOB` prints the summary again, and bad prompts are a 422."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from huggingface_hub.repocard import metadata_load

from tests.service.test_jobs_e2e import SPEC as JOB_SPEC
from tests.support.live_service import REPO, TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {
    **JOB_SPEC,
    "evaluation": {
        "dataset": "wikitext2",
        "seqlen": 32,
        "max_windows": 2,
        "sample_tokens": 3,
        "prompts": ["The capital of France is"],
    },
}


def cli(live_service, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    env.update(
        PYTHONPATH=str(REPO),
        PRUNESERVE_URL=live_service.url,
        PRUNESERVE_API_KEY=key or live_service.api_key,
        COLUMNS="200",
    )
    cmd = [sys.executable, "-m", "clients.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


def test_card_plots_samples_and_report_of_a_job(live_service, tmp_path):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        job = live_service.wait_job(c, job["id"], ("succeeded", "failed"))
        assert job["state"] == "succeeded", job["error"]
        listed = {a["path"] for a in c.get(f"/v1/jobs/{job['id']}/artifacts").json()["items"]}
        assert {"README.md", "plot_perplexity.png", "pruning_report.json"} <= listed
        card = tmp_path / "README.md"
        card.write_bytes(c.get(f"/v1/jobs/{job['id']}/artifacts/README.md").content)
        report = c.get(f"/v1/jobs/{job['id']}/artifacts/pruning_report.json").json()
    meta = metadata_load(card)
    assert meta["base_model"] == TINY_MODEL and {"2:4", "wanda"} <= set(meta["tags"])
    assert list(report["samples"]["after"]) == ["dense", "prune"]
    proc = cli(live_service, "report", job["id"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"job {job['id']}: ") and "perplexity per stage" in proc.stdout
    assert f"{report['perplexity']['after']['prune']:.3f}" in proc.stdout
    assert "The capital of France is" in proc.stdout
    other = cli(live_service, "report", job["id"], key=live_service.other_api_key)
    assert other.returncode == 1 and "not found" in other.stderr


@pytest.mark.parametrize(
    ("evaluation", "field"),
    [
        ({"prompts": ["p"] * 9}, "evaluation.prompts"),
        ({"sample_tokens": 1000}, "evaluation.sample_tokens"),
    ],
)
def test_bad_prompts_are_a_422_naming_the_field(live_service, evaluation, field):
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**SPEC, "evaluation": {**SPEC["evaluation"], **evaluation}})
    assert r.status_code == 422 and r.json()["field"] == field, r.json()
