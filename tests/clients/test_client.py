"""PruneClient against the live service: submit/wait round trip, idempotent retries, errors."""

from __future__ import annotations

import uuid

import pytest

from clients.errors import (
    AuthError,
    ConnectionFailed,
    JobCancelled,
    JobFailed,
    NotFound,
    PruneServeError,
    ServerError,
    ValidationError,
    WaitTimeout,
)
from service.schemas import JobState
from tests.clients.conftest import TINY_SPEC


def test_wait_reports_progress_and_returns_the_summary(client):
    seen = []
    job = client.submit(TINY_SPEC)
    assert job.state == JobState.queued
    final = client.wait(job.id, on_progress=seen.append, timeout=180, poll=0.2)
    assert final.state == JobState.succeeded
    # called on every change: first while the job was still pending, last when it finished
    # (a warm worker can finish this tiny job between two polls, so `running` may be skipped)
    assert seen[0].state in (JobState.queued, JobState.running)
    assert seen[-1].state == JobState.succeeded
    assert seen[-1].progress.n_layers == 2 and seen[-1].progress.percent == 100.0
    assert final.summary.sparsity == pytest.approx(0.5)
    assert final.summary.nm_ok is True
    assert final.summary.perplexity_dense and final.summary.perplexity_pruned
    events = client.events(job.id)
    assert {"state", "stage", "layer"} <= {e.kind for e in events}
    assert any(e.kind == "state" and e.message.startswith("running") for e in events)


def test_same_idempotency_key_returns_the_same_job(client):
    key = str(uuid.uuid4())
    first = client.submit(TINY_SPEC, idempotency_key=key)
    again = client.submit(TINY_SPEC, idempotency_key=key)
    other = client.submit(TINY_SPEC)
    assert again.id == first.id
    assert other.id != first.id
    with pytest.raises(PruneServeError) as exc:  # same key, another body
        client.submit({**TINY_SPEC, "sparsity": 0.5}, idempotency_key=key)
    assert exc.value.status == 409
    for job_id in (first.id, other.id):
        client.cancel(job_id)


def test_a_retried_submit_creates_one_job(live_service, proxy):
    """The first answer is lost after the service made the job: the retry gets the same job."""
    from clients.client import PruneClient

    with PruneClient(proxy.url, live_service.other_api_key, retries=2, backoff=0.05) as bob:
        before = {j.id for j in bob.iter_jobs()}
        proxy.break_next("drop", "POST", "/v1/jobs")
        job = bob.submit(TINY_SPEC)
        after = {j.id for j in bob.iter_jobs()}
        bob.cancel(job.id)
    posts = [r for r in proxy.seen("POST", "/v1/jobs") if r.path == "/v1/jobs"]
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert after - before == {job.id}


def test_idempotent_calls_retry_a_5xx_and_give_up_with_its_message(proxied, proxy, done_job):
    proxy.break_next("unavailable", "GET", f"/v1/jobs/{done_job.id}")
    assert proxied.get(done_job.id).id == done_job.id
    assert len(proxy.seen("GET", f"/v1/jobs/{done_job.id}")) == 2
    proxy.break_next("unavailable", "GET", f"/v1/jobs/{done_job.id}", times=3)
    with pytest.raises(ServerError, match="503 bad gateway"):
        proxied.get(done_job.id)


def test_uploads_are_not_retried(proxied, proxy, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("calibration text " * 100)
    proxy.break_next("drop", "POST", "/v1/datasets")
    with pytest.raises(ConnectionFailed):
        proxied.upload_dataset(text)
    assert len(proxy.seen("POST", "/v1/datasets")) == 1


def test_errors_carry_the_servers_message(client, live_service, done_job):
    with pytest.raises(NotFound, match="not found") as exc:
        client.get("no-such-job")
    assert exc.value.status == 404
    from clients.client import PruneClient

    with PruneClient(live_service.url, "not-a-key") as stranger, pytest.raises(AuthError) as exc:
        stranger.get(done_job.id)
    assert exc.value.status == 401 and "API key" in exc.value.detail
    with PruneClient(live_service.url, live_service.other_api_key) as bob, pytest.raises(NotFound):
        bob.get(done_job.id)  # another tenant's job


def test_validation_error_names_the_field(client):
    spec = {**TINY_SPEC, "calibration": {"nsamples": 4096, "seqlen": 2048}}
    with pytest.raises(ValidationError) as exc:
        client.submit(spec)
    assert exc.value.status == 422
    assert exc.value.field == "calibration.nsamples"
    assert "over the limit" in exc.value.detail
    assert str(exc.value).startswith("422 calibration.nsamples: ")


def test_wait_raises_job_failed_with_the_jobs_error(client, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short")
    dataset = client.upload_dataset(short)
    spec = {
        **TINY_SPEC,
        "calibration": {"dataset": f"upload:{dataset.id}", "nsamples": 4, "seqlen": 32},
    }
    job = client.submit(spec)
    with pytest.raises(JobFailed) as exc:
        client.wait(job.id, timeout=180, poll=0.2)
    assert exc.value.error is not None and exc.value.error.message
    assert exc.value.job.state == JobState.failed
    assert exc.value.error.message in str(exc.value)


def test_wait_times_out_then_reports_cancel(client):
    job = client.submit(TINY_SPEC)
    with pytest.raises(WaitTimeout) as exc:
        client.wait(job.id, timeout=0.1, poll=0.05)
    assert not exc.value.job.state.terminal
    client.cancel(job.id)
    with pytest.raises(JobCancelled):
        client.wait(job.id, timeout=120, poll=0.2)
    assert client.cancel(job.id).state == JobState.cancelled  # idempotent


def test_list_pages_follow_the_cursor(client, done_job):
    everything = [j.id for j in client.iter_jobs()]
    paged = [j.id for j in client.iter_jobs(page_size=1)]
    assert paged == everything and done_job.id in everything
    first = client.list(limit=1)
    assert len(first.items) == 1 and first.next_cursor
    succeeded = client.list(state="succeeded")
    assert done_job.id in {j.id for j in succeeded.items}
    assert all(j.state == JobState.succeeded for j in succeeded.items)


def test_a_delete_whose_answer_was_lost_is_retried_and_succeeds(client, proxied, proxy):
    job = client.submit(TINY_SPEC)
    proxy.break_next("drop", "DELETE", f"/v1/jobs/{job.id}")  # deleted, but the 204 is lost
    assert proxied.delete(job.id) is None
    assert [r.status for r in proxy.seen("DELETE", f"/v1/jobs/{job.id}")] == [0, 204]
    with pytest.raises(NotFound):
        client.get(job.id)
    client.delete(job.id)  # and again: still no error
    with pytest.raises(NotFound, match="not found") as exc:
        client.delete("no-such-job")
    assert exc.value.status == 404
