"""The status poll's fast path: `GET /v1/jobs/{id}` answered by the request guard in one Redis
round trip, skipping FastAPI's routing, dependency resolution and response validation.

A job is polled many times between changes, so the rendered response is cached per job and
reused while the stored record's bytes are unchanged; a changed record is rendered by the
routed handler's own code (`to_public`, the same JSON encoding as FastAPI's JSONResponse).
Anything else — an unknown job, another tenant's, a query string, Redis trouble, a record
that does not validate — falls through to the routed handler, so every error is made in one
place (`tests/service/test_fast_poll.py` checks both paths give the same bytes).
"""

from __future__ import annotations

import json
from collections import OrderedDict

from starlette.types import Scope, Send

from service.job_record import JobRecord
from service.jobs import JobStore

PREFIX = "/v1/jobs/"
MAX_ID = 64
CACHE_SIZE = 2048  # jobs whose rendered status one API process keeps


def render(content) -> bytes:
    """As FastAPI's JSONResponse encodes a response model's JSON-mode dump."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


class StatusPoll:
    def __init__(self, store: JobStore, size: int = CACHE_SIZE):
        self.store, self.size = store, size
        self.cache: OrderedDict[str, tuple[bytes, str, bytes]] = OrderedDict()

    def _job_id(self, scope: Scope) -> str | None:
        if scope["method"] != "GET" or scope.get("query_string"):
            return None
        path = scope["path"]
        if not path.startswith(PREFIX):
            return None
        job_id = path[len(PREFIX) :]
        if not job_id or len(job_id) > MAX_ID or "/" in job_id:
            return None
        return job_id

    def _rendered(self, job_id: str, raw: bytes) -> tuple[bytes, str, bytes]:
        from service.routes.jobs import to_public

        hit = self.cache.get(job_id)
        if hit is not None and hit[0] == raw:
            return hit
        rec = JobRecord.model_validate_json(raw)
        hit = (raw, rec.tenant, render(to_public(rec).model_dump(mode="json", by_alias=True)))
        self.cache[job_id] = hit
        self.cache.move_to_end(job_id)
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return hit

    async def __call__(self, scope: Scope, send: Send, tenant: str) -> bool:
        """True when it answered the request."""
        job_id = self._job_id(scope)
        if job_id is None:
            return False
        try:
            raw = await self.store.aget_raw(job_id)
            if raw is None:
                return False
            _, owner, body = self._rendered(job_id, raw)
        except Exception:  # Redis down, a record that does not validate: the routed path says
            return False
        if owner != tenant:
            return False  # the routed handler's 404, byte-identical to an unknown id's
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True
