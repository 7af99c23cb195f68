"""Liveness, readiness (Redis reachable and a worker alive) and Prometheus metrics.

Unauthenticated callers learn only up / not up; metrics need PRUNESERVE_METRICS_TOKEN.
"""

from __future__ import annotations

import hmac
import logging

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.auth import CHALLENGE, bearer
from service.deps import SettingsDep, StoreDep
from service.errors import ApiError, responses

router = APIRouter(tags=["health"])
log = logging.getLogger("pruneserve.api")


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(503))
def readyz(store: StoreDep) -> dict:
    """Ready when Redis answers and at least one worker sent a heartbeat recently."""
    try:
        store.r.ping()
        workers = store.workers_alive()
    except redis.RedisError as exc:
        log.warning("not ready: redis is not reachable: %r", exc)
        raise ApiError(503, "not ready") from None
    if not workers:
        log.warning("not ready: no worker alive (no fresh heartbeat in Redis)")
        raise ApiError(503, "not ready")
    return {"status": "ready"}


@router.get("/metrics", response_class=PlainTextResponse, responses=responses(401, 404, 503))
def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text format: jobs by state, queue depth, job durations (needs the token)."""
    expected = settings.METRICS_TOKEN
    if not expected:
        raise ApiError(404, "metrics are disabled; set PRUNESERVE_METRICS_TOKEN to enable them")
    given = bearer(request.headers.get("authorization", "")) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401, "send Authorization: Bearer <metrics token>", "Authorization", CHALLENGE
        )
    body = generate_latest(request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
