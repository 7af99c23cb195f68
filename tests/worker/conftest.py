"""Fixtures of the worker tests: a JobStore on a private, empty Redis."""

from __future__ import annotations

import pytest

from tests.worker.redis_store import fresh_store


@pytest.fixture
def store(tmp_path):
    s = fresh_store(tmp_path)
    yield s
    s.r.flushdb()
