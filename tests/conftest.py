"""Session fixtures shared by every test package: `live_service` (a real api + worker + redis)."""

from __future__ import annotations

import pytest

from tests.support.live_service import LiveService


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> LiveService:
    """api + worker + redis processes on temporary dirs with the tiny model; see LiveService."""
    svc = LiveService.start(tmp_path_factory.mktemp("live"))
    yield svc
    svc.close()
