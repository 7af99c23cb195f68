"""The remote CLI commands as a user runs them (`python -m clients.cli.main ...`) against the
live service: exit codes, --json output, and the server's message on errors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_FLAGS = [
    "--model",
    "tiny-llama",
    "--method",
    "wanda",
    "--sparsity",
    "2:4",
    "--nsamples",
    "4",
    "--seqlen",
    "32",
    "--eval",
    "wikitext2",
    "--eval-windows",
    "2",
]


@pytest.fixture
def cli(live_service):
    """Run the CLI with PRUNESERVE_URL / PRUNESERVE_API_KEY set, as a user's shell would."""
    live_service.ensure_worker()

    def run(*args: str, key: str | None = None, **extra_env: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
        env.update(PRUNESERVE_URL=live_service.url, PRUNESERVE_API_KEY=key or live_service.api_key)
        env.update(extra_env)
        cmd = [sys.executable, "-m", "clients.cli.main", *args]
        return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    return run


def test_submit_wait_download_json(cli, done_job, tmp_path):  # done_job: 2+ jobs to page
    out = cli("submit", *TINY_FLAGS, "--download", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    job = json.loads(out.stdout)
    assert job["state"] == "succeeded" and job["summary"]["nm_ok"] is True
    assert {Path(f).name for f in job["files"]} >= {"model.safetensors", "pruning_report.json"}
    status = cli("status", job["id"], "--json", "--events")
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == job["id"]
    assert json.loads(status.stdout)["events"]
    listed = cli("list", "--state", "succeeded", "--json")
    assert job["id"] in {j["id"] for j in json.loads(listed.stdout)["items"]}
    first = json.loads(cli("list", "--limit", "1", "--json").stdout)
    second = json.loads(
        cli("list", "--limit", "1", "--cursor", first["next_cursor"], "--json").stdout
    )
    assert len(second["items"]) == 1 and second["items"][0]["id"] != first["items"][0]["id"]
    files = cli("download", job["id"], str(tmp_path / "again"), "--json")
    assert files.returncode == 0
    for f in json.loads(files.stdout)["files"]:
        assert Path(f).read_bytes() == (tmp_path / Path(f).name).read_bytes()


def test_watch_prints_the_report_summary(cli, done_job):
    out = cli("watch", done_job.id)
    assert out.returncode == 0, out.stderr
    assert re.search(r"sparsity\s+50\.00% \(N:M pattern ok\)", out.stdout), out.stdout
    assert re.search(r"perplexity\s+[\d.]+ \(dense\) -> [\d.]+ \(pruned\)", out.stdout)
    assert f"job {done_job.id} succeeded" in out.stdout and "{" not in out.stdout
    human = cli("status", done_job.id)
    assert f"job       {done_job.id}" in human.stdout and "succeeded" in human.stdout
    assert re.search(r"sparsity\s+50\.00%", human.stdout), human.stdout


@pytest.mark.parametrize("columns", ["80", "120"])
def test_list_shows_every_job_id_whole(cli, done_job, columns):
    ids = [j["id"] for j in json.loads(cli("list", "--json").stdout)["items"]]
    table = cli("list", COLUMNS=columns)
    assert table.returncode == 0, table.stderr
    assert len(ids) >= 1 and done_job.id in ids
    for job_id in ids:
        assert job_id in table.stdout, table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= int(columns)


def test_submit_without_wait_prints_the_id_then_cancel(cli, live_service):
    live_service.stop_worker()  # the job stays queued: the cancel cannot lose a race with it
    out = cli("submit", *TINY_FLAGS)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    cancelled = cli("cancel", job_id, "--json")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["id"] == job_id
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    live_service.ensure_worker()
    watched = cli("watch", job_id, "--json")
    assert watched.returncode == 4  # cancelled
    assert json.loads(watched.stdout)["state"] == "cancelled"
    assert watched.stderr.strip().endswith("was cancelled")


def test_delete_prints_one_line_and_a_repeat_is_no_error(cli, live_service):
    job_id = cli("submit", *TINY_FLAGS).stdout.strip()
    theirs = cli("delete", job_id, key=live_service.other_api_key)
    assert (theirs.returncode, theirs.stdout) == (1, "")
    assert theirs.stderr == f"error: 404 job_id: job '{job_id}' not found\n"  # as for any id
    deleted = cli("delete", job_id)
    assert (deleted.returncode, deleted.stderr) == (0, "")
    assert deleted.stdout == f"job {job_id} deleted\n"
    again = cli("delete", job_id, "--json")
    assert again.returncode == 0 and json.loads(again.stdout) == {"id": job_id, "deleted": True}
    assert cli("status", job_id).returncode == 1
    missing = cli("delete", "no-such-job")
    assert missing.returncode == 1 and "error: 404 job_id: job 'no-such-job'" in missing.stderr


def test_failed_job_exits_3_with_its_error(cli, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short")
    up = cli("datasets", "upload", str(short), "--json")
    assert up.returncode == 0, up.stderr
    dataset = json.loads(up.stdout)["id"]
    out = cli("submit", *TINY_FLAGS, "--calibration", f"upload:{dataset}", "--wait")
    assert out.returncode == 3
    assert "failed:" in out.stderr.strip().splitlines()[-1]


def test_server_validation_error_is_one_line_with_its_message(cli):
    out = cli("submit", *TINY_FLAGS, "--nsamples", "4096", "--seqlen", "2048")
    assert out.returncode == 1 and out.stdout == ""
    line = out.stderr.strip()
    assert "\n" not in line
    assert line.startswith("error: 422 calibration.nsamples: ") and "over the limit" in line


def test_errors_with_json_and_exit_codes(cli):
    missing = cli("status", "no-such-job", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["error"]["type"] == "NotFound"
    assert missing.stderr.startswith("error: 404 ") and "not found" in missing.stderr
    denied = cli("list", key="wrong-key")
    assert denied.returncode == 1 and denied.stderr.startswith("error: 401 invalid API key")
    local = cli("submit", *TINY_FLAGS[:4], "--sparsity", "3:2")  # refused before any request
    assert local.returncode == 2 and local.stdout == ""
    assert local.stderr.strip().startswith("error: ValidationError: sparsity: ")
    local_json = cli("submit", *TINY_FLAGS[:4], "--sparsity", "3:2", "--json")
    assert local_json.returncode == 2
    assert json.loads(local_json.stdout)["error"]["type"] == "ValidationError"
