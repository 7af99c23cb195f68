"""The FastAPI app: settings, Redis-backed stores, the Celery producer, the request guard
(header, key and body limits before any body is read) and the routers."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from service import console_pages, docs_pages, errors, openapi
from service.datasets import DatasetStore
from service.fast_poll import StatusPoll
from service.guard import RequestGuard
from service.jobs import JobStore
from service.metrics import make_registry
from service.queue import make_celery
from service.routes import artifacts, datasets, health, jobs
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; refuses unsafe settings outside development mode."""
    settings = settings or Settings()
    settings.check_api_safety()
    app = FastAPI(
        title="pruneserve",
        version="0.1.0",
        description="One-shot post-training pruning of LLMs (magnitude, Wanda, SparseGPT).",
        docs_url=None,  # docs_pages serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    # bounded waits: a down or blackholed Redis is a prompt 503, never a hung request
    r = redis.Redis.from_url(
        settings.REDIS_URL, health_check_interval=30, socket_connect_timeout=5, socket_timeout=10
    )
    app.state.settings = settings
    app.state.store = JobStore(r, settings)
    app.state.datasets = DatasetStore(r, settings)
    app.state.celery = make_celery(settings)
    app.state.registry = make_registry(app.state.store)
    errors.install(app)
    poll = StatusPoll(app.state.store) if settings.FAST_POLL else None
    app.add_middleware(RequestGuard, settings=settings, poll=poll)
    for module in (jobs, artifacts, datasets, health):
        app.include_router(module.router)
    openapi.install(app)
    docs_pages.install(app)
    console_pages.install(app)
    return app
