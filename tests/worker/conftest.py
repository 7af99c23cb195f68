"""Fixtures of the worker tests: a JobStore on a private, empty Redis; tiny models and data."""

from __future__ import annotations

import pytest

from tests.support.live_service import prepare_dirs
from tests.worker.redis_store import fresh_store


@pytest.fixture
def store(tmp_path):
    s = fresh_store(tmp_path)
    yield s
    s.r.flushdb()


@pytest.fixture(scope="session")
def job_dirs(tmp_path_factory) -> dict:
    """MODELS_DIR (tiny-llama, 2 layers; tiny-llama4, 4 layers) and DATA_DIR (wikitext2) for
    jobs that really run: fresh_store(tmp_path, **job_dirs)."""
    root = tmp_path_factory.mktemp("job_dirs")
    prepare_dirs(root / "models", root / "data", ("llama", "llama4"))
    return {"MODELS_DIR": root / "models", "DATA_DIR": root / "data"}
