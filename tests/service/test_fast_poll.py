"""The status poll's fast path (service/fast_poll.py) gives the routed handler's bytes: on a
real Redis it answers the owner's GET from its render cache, re-renders a changed record and
leaves everything else (other tenants, query strings, Redis down) to the router; through the
live API both paths return identical responses for finished and failed jobs."""

from __future__ import annotations

import asyncio

import pytest
import redis

from service import job_state
from service.fast_poll import StatusPoll, render
from service.jobs import JobStore, now
from service.routes.jobs import to_public
from service.schemas import JobError, PruneSpec
from service.settings import Settings
from tests.support.live_service import TINY_MODEL
from tests.support.redis_server import redis_url

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


@pytest.fixture
def store():
    r = redis.Redis.from_url(redis_url())
    r.flushdb()
    yield JobStore(r, Settings(ENV="development", REDIS_URL=redis_url()))
    r.flushdb()
    r.close()


def get(poll: StatusPoll, path: str, tenant: str, query: bytes = b"") -> tuple[bool, list]:
    sent: list = []

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": query}
    answered = asyncio.run(poll(scope, send, tenant))
    return answered, sent


def body_of(sent: list) -> bytes:
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
    return sent[1]["body"]


def test_answers_the_owner_and_rerenders_a_changed_record(store):
    rec, _ = store.create("alice", SPEC)
    poll = StatusPoll(store)
    answered, sent = get(poll, f"/v1/jobs/{rec.id}", "alice")
    assert answered
    first = body_of(sent)
    assert first == render(to_public(store.get(rec.id)).model_dump(mode="json"))
    # the worker moves it on: the cache must not serve the old state
    claimed = store.update(
        rec.id, lambda r: job_state.claim(r, "w", now(), max_attempts=3, cancel_requested=False)
    )
    store.update(
        rec.id,
        lambda r: job_state.fail(
            r,
            "w",
            now(),
            JobError(type="ModelLoadError", message="/srv/secret/models/x has no config.json"),
        ),
    )
    answered, sent = get(poll, f"/v1/jobs/{rec.id}", "alice")
    second = body_of(sent)
    assert claimed is not None and second != first
    assert b'"state":"failed"' in second and b"/srv/secret" not in second  # redacted as routed


@pytest.mark.parametrize(
    "path,tenant,query",
    [
        ("/v1/jobs/{id}", "bob", b""),
        ("/v1/jobs/{id}", "alice", b"x=1"),
        ("/v1/jobs/{id}/events", "alice", b""),
        ("/v1/jobs/nope", "alice", b""),
        ("/v1/jobs/" + "a" * 65, "alice", b""),
    ],
)
def test_everything_else_falls_through(store, path, tenant, query):
    rec, _ = store.create("alice", SPEC)
    answered, sent = get(StatusPoll(store), path.format(id=rec.id), tenant, query)
    assert not answered and sent == []


def test_redis_down_falls_through():
    down = JobStore(
        redis.Redis(port=1), Settings(ENV="development", REDIS_URL="redis://127.0.0.1:1/0")
    )
    answered, sent = get(StatusPoll(down), "/v1/jobs/abc", "alice")
    assert not answered and sent == []


def test_cache_is_bounded(store):
    poll = StatusPoll(store, size=3)
    ids = [store.create("alice", SPEC)[0].id for _ in range(5)]
    for job_id in ids:
        assert get(poll, f"/v1/jobs/{job_id}", "alice")[0]
    assert list(poll.cache) == ids[-3:]


@pytest.mark.e2e
def test_live_fast_and_routed_responses_are_identical(live_service):
    """A query string sends the same GET through FastAPI's router: same status, type, bytes."""
    broken = live_service.models_dir / "broken-model"  # fails in the worker, with an error
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    specs = [
        {"model": TINY_MODEL, "method": "magnitude", "sparsity": 0.5},
        {"model": "broken-model", "method": "magnitude", "sparsity": 0.5},
    ]
    with live_service.client() as c, live_service.client(live_service.other_api_key) as other:
        for spec in specs:
            job = c.post("/v1/jobs", json=spec).raise_for_status().json()
            done = live_service.wait_job(c, job["id"], ("succeeded", "failed", "cancelled"), 120)
            fast = c.get(f"/v1/jobs/{job['id']}")
            routed = c.get(f"/v1/jobs/{job['id']}?via=router")
            assert fast.status_code == routed.status_code == 200
            assert fast.headers["content-type"] == routed.headers["content-type"]
            assert fast.content == routed.content, (fast.text, routed.text)
            assert fast.json()["state"] == done["state"]
            theirs = other.get(f"/v1/jobs/{job['id']}")  # another tenant: the router's 404
            assert theirs.status_code == 404 and theirs.json()["field"] == "job_id"
