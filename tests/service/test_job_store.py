"""JobStore on a real Redis: create is one atomic write, so a connection lost at any command of
a submit leaves no Idempotency-Key without its job, and the retry gets the one job."""

from __future__ import annotations

import asyncio

import pytest
import redis

from service import job_state
from service.jobs import IdempotencyConflict, JobStore, now
from service.schemas import JobState, PruneSpec
from service.settings import Settings
from tests.support.redis_proxy import RedisProxy, client_through
from tests.support.redis_server import redis_url

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


@pytest.fixture
def direct() -> redis.Redis:
    r = redis.Redis.from_url(redis_url())
    r.flushdb()
    yield r
    r.flushdb()
    r.close()


@pytest.fixture
def store(direct) -> JobStore:
    return JobStore(direct, Settings(ENV="development"))


def flaky_store(proxy: RedisProxy, db: int) -> JobStore:
    """A store whose connection goes through `proxy`."""
    return JobStore(client_through(proxy, db), Settings(ENV="development"))


def assert_no_key_without_job(direct: redis.Redis) -> None:
    for key in direct.scan_iter("ps:idem:*"):
        job_id = direct.get(key).decode()
        assert direct.exists(f"ps:job:{job_id}"), f"{key} points at job {job_id}, never saved"


@pytest.mark.parametrize("deliver", [False, True], ids=["request-lost", "reply-lost"])
def test_submit_cut_at_any_command_then_retried_gets_one_job(store, direct, proxy, deliver):
    db = direct.connection_pool.connection_kwargs.get("db", 0)
    cut, completed = 0, False
    while not completed:
        assert cut < 50, "a create should need far fewer commands"
        flaky, key = flaky_store(proxy, db), f"key-{cut}-{deliver}"
        proxy.cut_at(cut, deliver=deliver)
        try:
            first, _ = flaky.create("alice", SPEC, key)
            completed = True
        except redis.ConnectionError:
            first = None
        proxy.heal()
        assert_no_key_without_job(direct)
        again, created = store.create("alice", SPEC, key)  # the client's retry
        if first is not None:
            assert (again.id, created) == (first.id, False)
        assert again.state == JobState.queued and store.get(again.id) == again
        flaky.r.close()
        cut += 1
    assert cut > 1  # the loop really cut the create at least once before it completed
    jobs = direct.zrange("ps:tenant:alice:jobs", 0, -1)
    assert len(jobs) == cut  # one job per key, never two


def test_same_key_same_body_is_the_same_job_other_body_is_409(store):
    first, created = store.create("alice", SPEC, "k")
    again, created_again = store.create("alice", SPEC, "k")
    assert created and not created_again and again == first
    with pytest.raises(IdempotencyConflict, match="another body"):
        store.create("alice", SPEC.model_copy(update={"method": "magnitude"}), "k")
    other_tenant, created_other = store.create("bob", SPEC, "k")
    assert created_other and other_tenant.id != first.id


def test_create_writes_record_indexes_event_and_unqueued_mark(store, direct):
    rec, _ = store.create("alice", SPEC)
    assert store.get(rec.id) == rec
    assert store.ids_in_state("queued") == [rec.id]
    assert [e["message"] for e in store.events(rec.id)] == ["queued"]
    assert store.unqueued_since(0) == [rec.id]
    store.mark_enqueued(rec.id)
    assert store.unqueued_since(0) == []


def test_update_applies_a_transition_and_moves_the_state_index(store):
    rec, _ = store.create("alice", SPEC)
    claim = lambda r: job_state.claim(r, "w1", now(), max_attempts=3, cancel_requested=False)  # noqa: E731
    running = store.update(rec.id, claim)
    assert running.state == JobState.running and store.get(rec.id) == running
    assert store.ids_in_state("queued") == [] and store.ids_in_state("running") == [rec.id]
    with pytest.raises(job_state.IllegalTransition):
        store.update(rec.id, lambda r: job_state.cancel(r, now()))
    assert store.get(rec.id) == running  # an illegal transition writes nothing
    assert store.update("nope", claim) is None


def test_request_cancel_ends_a_queued_job_and_flags_a_running_one(store):
    queued, _ = store.create("alice", SPEC)
    assert store.request_cancel(queued.id).state == JobState.cancelled
    assert store.ids_in_state("cancelled") == [queued.id]
    running, _ = store.create("alice", SPEC)
    claim = lambda r: job_state.claim(r, "w1", now(), max_attempts=3, cancel_requested=False)  # noqa: E731
    store.update(running.id, claim)
    assert store.request_cancel(running.id).state == JobState.running
    assert store.cancel_requested(running.id)


def test_async_read_of_the_api_sees_the_same_record_and_tenancy(store, direct):
    rec, _ = store.create("alice", SPEC)
    reader = JobStore(direct, Settings(ENV="development", REDIS_URL=redis_url()))

    async def read(tenant: str, job_id: str):
        return await reader.aget_for_tenant(tenant, job_id)

    assert asyncio.run(read("alice", rec.id)) == rec
    assert asyncio.run(read("bob", rec.id)) is None  # another tenant's job: as if absent
    assert asyncio.run(read("alice", "no-such-job")) is None
