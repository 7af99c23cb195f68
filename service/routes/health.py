"""Liveness, readiness (Redis reachable and a worker alive) and Prometheus metrics."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import StoreDep
from service.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(store: StoreDep) -> dict:
    """Ready when Redis answers and at least one worker sent a heartbeat recently."""
    try:
        store.r.ping()
        workers = store.workers_alive()
    except redis.RedisError as exc:
        raise ApiError(503, f"redis is not reachable: {exc}") from None
    if not workers:
        raise ApiError(503, "no worker alive (no fresh heartbeat in Redis)")
    return {"status": "ready", "workers": sorted(workers)}


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format: jobs by state, queue depth, job durations."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
