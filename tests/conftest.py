"""Fixtures shared by every test package: `live_service` (a real api + worker + redis) and
`proxy` (a RedisProxy in front of the test process's Redis)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.support.live_service import LiveService
from tests.support.redis_proxy import RedisProxy
from tests.support.redis_server import redis_url


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> LiveService:
    """api + worker + redis processes on temporary dirs with the tiny model; see LiveService."""
    svc = LiveService.start(tmp_path_factory.mktemp("live"))
    yield svc
    svc.close()


@pytest.fixture
def proxy() -> RedisProxy:
    url = urlparse(redis_url())
    p = RedisProxy((url.hostname, url.port))
    yield p
    p.close()
