"""Job records, events, cancel flags and heartbeats in Redis (the api and the worker share it).

Keys: ps:job:<id> (JSON record), ps:tenant:<t>:jobs (sorted set, newest first by sequence),
ps:events:<id> (list), ps:cancel:<id>, ps:state:<state> (sets, for metrics), ps:idem:<t>:<key>.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import redis

from service.schemas import JobState, PruneSpec
from service.settings import Settings

Record = dict[str, Any]
DURATION_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class IdempotencyConflict(Exception):
    """An Idempotency-Key was reused with a different request body."""


class JobStore:
    """All job state in Redis; every read-modify-write is an optimistic transaction."""

    def __init__(self, r: redis.Redis, settings: Settings):
        self.r = r
        self.settings = settings

    # -- records ---------------------------------------------------------------------------
    def create(
        self, tenant: str, spec: PruneSpec, idem_key: str | None = None
    ) -> tuple[Record, bool]:
        """A new queued job, or the existing one for the same Idempotency-Key."""
        spec_json = spec.model_dump(mode="json")
        job_id = uuid.uuid4().hex
        if idem_key:
            digest = hashlib.sha256(idem_key.encode()).hexdigest()
            ikey = f"ps:idem:{tenant}:{digest}"
            if not self.r.set(ikey, job_id, nx=True, ex=self.settings.IDEMPOTENCY_TTL_S):
                existing = self.get(self.r.get(ikey).decode())
                if existing is None:
                    raise IdempotencyConflict("the job for this Idempotency-Key is being created")
                if existing["spec"] != spec_json:
                    raise IdempotencyConflict("Idempotency-Key was already used with another body")
                return existing, False
        record: Record = {
            "id": job_id,
            "tenant": tenant,
            "state": JobState.queued.value,
            "spec": spec_json,
            "created_at": now_iso(),
            "started_at": None,
            "finished_at": None,
            "attempts": 0,
            "progress": {"stage": "queued"},
            "error": None,
            "summary": None,
            "artifacts": [],
            "owner": None,
        }
        seq = self.r.incr("ps:seq")
        pipe = self.r.pipeline()
        pipe.set(_job_key(job_id), json.dumps(record))
        pipe.zadd(f"ps:tenant:{tenant}:jobs", {job_id: seq})
        pipe.sadd(_state_key(JobState.queued.value), job_id)
        pipe.execute()
        self.add_event(job_id, "state", "queued")
        return record, True

    def get(self, job_id: str) -> Record | None:
        raw = self.r.get(_job_key(job_id))
        return json.loads(raw) if raw else None

    def get_for_tenant(self, tenant: str, job_id: str) -> Record | None:
        """The job if it exists and belongs to `tenant`; None otherwise (so callers 404)."""
        rec = self.get(job_id)
        return rec if rec and rec["tenant"] == tenant else None

    def list(
        self, tenant: str, state: str | None, limit: int, cursor: int | None
    ) -> tuple[list[Record], str | None]:
        """The tenant's jobs, newest first; the cursor is the sequence of the last item seen."""
        key = f"ps:tenant:{tenant}:jobs"
        top: str = f"({cursor}" if cursor is not None else "+inf"
        items: list[Record] = []
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
                if rec and (state is None or rec["state"] == state):
                    items.append(rec)
                    if len(items) == limit:
                        break
        more = self.r.zrevrangebyscore(key, top, "-inf", start=0, num=1)
        return items, (str(int(last_seq)) if more and last_seq is not None else None)

    def update(self, job_id: str, fn: Callable[[Record], Record | None]) -> Record | None:
        """Apply `fn` atomically; it returns the new record, or None for no change."""
        key = _job_key(job_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    rec = json.loads(raw)
                    old_state = rec["state"]
                    new = fn(rec)
                    if new is None:
                        pipe.unwatch()
                        return json.loads(raw)
                    pipe.multi()
                    pipe.set(key, json.dumps(new))
                    if new["state"] != old_state:
                        pipe.smove(_state_key(old_state), _state_key(new["state"]), job_id)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    # -- events ----------------------------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str, **data: Any) -> None:
        event = {"ts": now_iso(), "kind": kind, "message": message, "data": data}
        key = f"ps:events:{job_id}"
        pipe = self.r.pipeline()
        pipe.rpush(key, json.dumps(event))
        pipe.ltrim(key, -self.settings.MAX_EVENTS, -1)
        pipe.execute()

    def events(self, job_id: str) -> list[Record]:
        return [json.loads(e) for e in self.r.lrange(f"ps:events:{job_id}", 0, -1)]

    # -- cancel ----------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> Record | None:
        """Flag the job; a queued job is cancelled at once, a running one at its next layer."""
        self.r.set(f"ps:cancel:{job_id}", "1")

        def _cancel_queued(rec: Record) -> Record | None:
            if rec["state"] != JobState.queued.value:
                return None
            rec.update(state=JobState.cancelled.value, finished_at=now_iso())
            rec["progress"] = {**rec["progress"], "stage": "cancelled"}
            return rec

        before = self.get(job_id)
        rec = self.update(job_id, _cancel_queued)
        if before and rec and before["state"] != rec["state"]:
            self.add_event(job_id, "state", "cancelled before it started")
        elif rec and not JobState(rec["state"]).terminal:
            self.add_event(job_id, "info", "cancel requested; stops at the next layer boundary")
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


def _job_key(job_id: str) -> str:
    return f"ps:job:{job_id}"


def _state_key(state: str) -> str:
    return f"ps:state:{state}"
