"""The recovery sweep on a real Redis broker: orphaned running jobs are sent again, and so are
jobs saved but never enqueued; nothing else is."""

from __future__ import annotations

import base64
import json

import pytest

from service import job_state
from service.jobs import now
from service.queue import PRUNE_TASK, dispatch, make_celery
from service.schemas import JobState, PruneSpec
from worker.recovery import enqueue_unqueued, requeue_orphans, sweep

SPEC = PruneSpec(model="tiny-llama", method="wanda", sparsity="2:4")


@pytest.fixture
def app(store):
    return make_celery(store.settings)


def sent_job_ids(store) -> list[str]:
    """The job ids of the prune tasks waiting in the broker's queue, oldest first."""
    ids = []
    for raw in reversed(store.r.lrange(store.settings.QUEUE, 0, -1)):
        message = json.loads(raw)
        assert message["headers"]["task"] == PRUNE_TASK
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        ids += args
    return ids


def run_by(store, job_id: str, owner: str):
    claim = lambda r: job_state.claim(r, owner, now(), max_attempts=3, cancel_requested=False)  # noqa: E731
    return store.update(job_id, claim)


def test_job_saved_but_never_enqueued_is_sent_once(store, app):
    rec, _ = store.create("alice", SPEC)  # the api died before sending the task
    assert enqueue_unqueued(store, store.settings, app, grace_s=0) == [rec.id]
    assert sent_job_ids(store) == [rec.id]
    assert enqueue_unqueued(store, store.settings, app, grace_s=0) == []
    assert sent_job_ids(store) == [rec.id]
    assert "never enqueued" in store.events(rec.id)[-1]["message"]


def test_a_dispatched_job_is_not_sent_again(store, app):
    rec, _ = store.create("alice", SPEC)
    dispatch(app, store.settings, store, rec.id)
    assert sweep(store, store.settings, app) == []
    assert enqueue_unqueued(store, store.settings, app, grace_s=0) == []
    assert sent_job_ids(store) == [rec.id]


def test_a_fresh_unqueued_job_is_left_to_the_api(store, app):
    store.create("alice", SPEC)
    assert enqueue_unqueued(store, store.settings, app, grace_s=3600) == []
    assert sent_job_ids(store) == []


def test_a_job_cancelled_before_it_was_sent_is_not_sent(store, app):
    rec, _ = store.create("alice", SPEC)
    store.request_cancel(rec.id)
    assert enqueue_unqueued(store, store.settings, app, grace_s=0) == []
    assert sent_job_ids(store) == [] and store.unqueued_since(0) == []


def test_running_job_without_heartbeat_is_requeued_once_a_minute(store, app):
    rec, _ = store.create("alice", SPEC)
    store.mark_enqueued(rec.id)
    run_by(store, rec.id, "elsewhere:1:dead")
    assert requeue_orphans(store, store.settings, app) == [rec.id]
    assert requeue_orphans(store, store.settings, app) == []  # not again within the minute
    assert sent_job_ids(store) == [rec.id]
    assert store.get(rec.id).state == JobState.running  # the next delivery takes it over


def test_running_job_with_a_live_heartbeat_is_left_alone(store, app):
    rec, _ = store.create("alice", SPEC)
    store.mark_enqueued(rec.id)
    run_by(store, rec.id, "elsewhere:1:alive")
    store.beat_job(rec.id, "elsewhere:1:alive")
    assert sweep(store, store.settings, app) == []
    assert sent_job_ids(store) == []
