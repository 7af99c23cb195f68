"""Job records, events, cancel flags and heartbeats in Redis (the api and the worker share it).

Keys: ps:job:<id> (JSON record), ps:tenant:<t>:jobs (sorted set, newest first by sequence),
ps:events:<id> (list), ps:cancel:<id>, ps:state:<state> (sets, for metrics), ps:idem:<t>:<key>,
ps:unqueued (sorted set of jobs saved but not yet enqueued), ps:finished (sorted set of ended
jobs by end time, for retention); service/job_delete.py removes them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis
import redis.asyncio as aioredis

from service import job_state
from service.job_record import JobRecord
from service.schemas import JobState, PruneSpec
from service.settings import Settings

DURATION_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
UNQUEUED = "ps:unqueued"  # sorted set: jobs saved but not yet handed to Celery, by save time
FINISHED = "ps:finished"  # sorted set: ended jobs by finished_at (epoch seconds)

# One atomic write: the Idempotency-Key, the record, its indexes and its first event exist
# together or not at all, so no key can point at a job that was never saved.
_CREATE = """
if KEYS[1] ~= '' then
  local existing = redis.call('GET', KEYS[1])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
redis.call('RPUSH', KEYS[7], ARGV[4])
return {1, ARGV[1]}
"""


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_iso() -> str:
    return now().isoformat()


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""


class JobStore:
    """Stores and loads job records in Redis; the changes themselves are service.job_state's.

    Every read-modify-write is an optimistic transaction (WATCH/MULTI).
    """

    def __init__(self, r: redis.Redis, settings: Settings):
        self.r = r
        self.settings = settings
        self._create = r.register_script(_CREATE)
        self._aio: tuple[asyncio.AbstractEventLoop, aioredis.Redis] | None = None

    # -- records ---------------------------------------------------------------------------
    def create(
        self, tenant: str, spec: PruneSpec, idem_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """A new queued job, or the existing one for the same Idempotency-Key."""
        rec = job_state.new_job(uuid.uuid4().hex, tenant, spec, now())
        ikey = ""
        if idem_key:
            ikey = f"ps:idem:{tenant}:{hashlib.sha256(idem_key.encode()).hexdigest()}"
            rec = rec.model_copy(update={"idem_key": ikey})
        event = _event("state", "queued")
        keys = [ikey, _job_key(rec.id), f"ps:tenant:{tenant}:jobs", "ps:seq"]
        keys += [_state_key(JobState.queued.value), UNQUEUED, f"ps:events:{rec.id}"]
        args = [rec.id, rec.model_dump_json(), self.settings.IDEMPOTENCY_TTL_S, event, time.time()]
        created, job_id = self._create(keys=keys, args=args)
        if created:
            return rec, True
        existing = self.get(job_id.decode())
        if existing is None:  # only if someone deleted the record by hand
            raise IdempotencyConflict("the job of this Idempotency-Key no longer exists")
        if existing.spec.model_dump(mode="json") != spec.model_dump(mode="json"):
            raise IdempotencyConflict("Idempotency-Key was already used with another body")
        return existing, False

    def mark_enqueued(self, job_id: str) -> None:
        """The job's task is in the broker: the recovery sweep need not send it."""
        self.r.zrem(UNQUEUED, job_id)

    def unqueued_since(self, older_than_s: float) -> list[str]:
        """Jobs saved more than `older_than_s` seconds ago whose task was never sent."""
        top = time.time() - older_than_s
        return [m.decode() for m in self.r.zrangebyscore(UNQUEUED, "-inf", top)]

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.r.get(_job_key(job_id))
        return JobRecord.model_validate_json(raw) if raw else None

    def get_for_tenant(self, tenant: str, job_id: str) -> JobRecord | None:
        """The job if it exists and belongs to `tenant`; None otherwise (so callers 404)."""
        rec = self.get(job_id)
        return rec if rec and rec.tenant == tenant else None

    async def aget_raw(self, job_id: str) -> bytes | None:
        """The stored record's JSON, read on the event loop (the API's hot path: polling)."""
        return await self._async_redis().get(_job_key(job_id))

    async def aget_for_tenant(self, tenant: str, job_id: str) -> JobRecord | None:
        """get_for_tenant without blocking the event loop."""
        raw = await self.aget_raw(job_id)
        rec = JobRecord.model_validate_json(raw) if raw else None
        return rec if rec and rec.tenant == tenant else None

    def _async_redis(self) -> aioredis.Redis:
        """An asyncio client of settings.REDIS_URL for the running loop (one per loop)."""
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            self._aio = (loop, aioredis.Redis.from_url(self.settings.REDIS_URL))
        return self._aio[1]

    def list(
        self, tenant: str, state: str | None, limit: int, cursor: int | None
    ) -> tuple[list[JobRecord], str | None]:
        """The tenant's jobs, newest first; the cursor is the sequence of the last item seen."""
        key = f"ps:tenant:{tenant}:jobs"
        top: str = f"({cursor}" if cursor is not None else "+inf"
        items: list[JobRecord] = []
        last_seq: float | None = None
        while len(items) < limit:
            batch = self.r.zrevrangebyscore(
                key, top, "-inf", start=0, num=limit * 2, withscores=True
            )
            if not batch:
                return items, None
            for member, score in batch:
                top, last_seq = f"({int(score)}", score
                rec = self.get(member.decode())
                if rec and (state is None or rec.state.value == state):
                    items.append(rec)
                    if len(items) == limit:
                        break
        more = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=1)
        return items, (str(int(last_seq)) if more and last_seq is not None else None)

    def update(self, job_id: str, fn: Callable[[JobRecord], JobRecord]) -> JobRecord | None:
        """Store `fn(record)` atomically (None when there is no such job); `fn` returning the
        record itself means no change, and its IllegalTransition propagates."""
        key = _job_key(job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    rec = JobRecord.model_validate_json(raw)
                    new = fn(rec)
                    if new is rec:
                        return rec
                    pipe.multi()
                    pipe.set(key, new.model_dump_json())
                    if new.state != rec.state:
                        pipe.smove(_state_key(rec.state.value), _state_key(new.state.value), job_id)
                        if new.state.terminal and new.finished_at is not None:
                            pipe.zadd(FINISHED, {job_id: new.finished_at.timestamp()})
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    # -- events ----------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str, **data: Any) -> None:
        key = f"ps:events:{job_id}"
        pipe = self.r.pipeline()
        pipe.rpush(key, _event(kind, message, **data))
        pipe.ltrim(key, -self.settings.MAX_EVENTS, -1)
        pipe.execute()

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.r.lrange(f"ps:events:{job_id}", 0, -1)]

    # -- cancel ----------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Flag the job; a queued job is cancelled at once, a running one at its next layer."""
        self.r.set(f"ps:cancel:{job_id}", "1")

        def cancel_queued(rec: JobRecord) -> JobRecord:
            return job_state.cancel(rec, now()) if rec.state == JobState.queued else rec

        before = self.get(job_id)
        rec = self.update(job_id, cancel_queued)
        if before and rec and before.state != rec.state:
            self.add_event(job_id, "state", "cancelled before it started")
        elif rec and not rec.state.terminal:
            self.add_event(job_id, "info", "cancel requested; it stops within seconds")
        return rec

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(f"ps:cancel:{job_id}"))

    # -- heartbeats ------------------------------------------------------------------------
    def beat_job(self, job_id: str, owner: str) -> None:
        """The process running `job_id` is alive (expires after 3 heartbeats)."""
        self.r.set(f"ps:jobhb:{job_id}", owner, ex=max(1, int(self.settings.HEARTBEAT_S * 3)))

    def job_owner_alive(self, job_id: str) -> str | None:
        raw = self.r.get(f"ps:jobhb:{job_id}")
        return raw.decode() if raw else None

    def clear_job_beat(self, job_id: str) -> None:
        self.r.delete(f"ps:jobhb:{job_id}")

    def beat_worker(self, name: str) -> None:
        self.r.set(f"ps:worker:{name}", now_iso(), ex=max(1, int(self.settings.HEARTBEAT_S * 3)))

    def workers_alive(self) -> list[str]:
        return [k.decode().removeprefix("ps:worker:") for k in self.r.scan_iter("ps:worker:*")]

    # -- metrics ---------------------------------------------------------------------------
    def ids_in_state(self, state: str) -> list[str]:
        return [m.decode() for m in self.r.smembers(_state_key(state))]

    def count_by_state(self) -> dict[str, int]:
        return {s.value: int(self.r.scard(_state_key(s.value))) for s in JobState}

    def queue_depth(self) -> int:
        return int(self.r.llen(self.settings.QUEUE))

    def record_duration(self, state: str, seconds: float) -> None:
        """Histogram of finished job durations, kept in one Redis hash per final state."""
        key = f"ps:metrics:duration:{state}"
        pipe = self.r.pipeline()
        for le in DURATION_BUCKETS:
            if seconds <= le:
                pipe.hincrby(key, str(le), 1)
        pipe.hincrby(key, "+Inf", 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.execute()

    def durations(self, state: str) -> dict[str, float]:
        raw = self.r.hgetall(f"ps:metrics:duration:{state}")
        return {k.decode(): float(v) for k, v in raw.items()}


def _event(kind: str, message: str, **data: Any) -> str:
    return json.dumps({"ts": now_iso(), "kind": kind, "message": message, "data": data})


def _job_key(job_id: str) -> str:
    return f"ps:job:{job_id}"


def _state_key(state: str) -> str:
    return f"ps:state:{state}"
