"""A JobStore and Settings on a private Redis, flushed per test (worker unit tests), and the
same store through a RedisProxy."""

from __future__ import annotations

from pathlib import Path

import redis

from service.jobs import JobStore
from service.settings import Settings
from tests.support.redis_proxy import RedisProxy, client_through
from tests.support.redis_server import redis_url


def fresh_store(tmp_path: Path, **overrides) -> JobStore:
    settings = Settings(
        **{
            "ENV": "development",
            "REDIS_URL": redis_url(),
            "ARTIFACTS_DIR": tmp_path / "artifacts",
            "MODELS_DIR": tmp_path / "models",
            "DATA_DIR": tmp_path / "data",
            "HEARTBEAT_S": 0.05,
            **overrides,
        }
    )
    r = redis.Redis.from_url(settings.REDIS_URL)
    r.flushdb()
    return JobStore(r, settings)


def flaky_store(direct: JobStore, proxy: RedisProxy) -> JobStore:
    """`direct`'s store (same db and settings) with its connections through `proxy`."""
    db = direct.r.connection_pool.connection_kwargs.get("db", 0)
    return JobStore(client_through(proxy, db), direct.settings)
