"""`revision` never leaves the hub cache: an offline hub reads refs/<revision> as a file and
uses its content as the snapshot folder, so a path in `revision` would pick any directory."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from worker.engine.errors import ModelLoadError
from worker.engine.model.model_io import locate_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> tuple[Path, Path, str]:
    """(cache dir holding org/cached at main, an outside model dir, the attacking revision)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "cache" / "models--org--cached"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text('{"who": "cached"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    outside = tmp_path / "outside" / "secret-model"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text('{"who": "outside"}')
    # an "uploaded" text file whose content is a path from snapshots/ to the outside model
    upload = tmp_path / "uploads" / "abc.txt"
    upload.parent.mkdir()
    upload.write_text("../../../outside/secret-model")
    revision = "../../../uploads/abc.txt"  # relative to <repo>/refs/
    return tmp_path / "cache", outside, revision


def test_a_cached_revision_still_resolves(offline_cache):
    cache, _, _ = offline_cache
    path = locate_model("org/cached", "main", cache_dir=cache, allow_local=False)
    assert (path / "config.json").read_text() == '{"who": "cached"}'


def test_revision_path_traversal_is_refused_before_the_hub_is_read(offline_cache):
    cache, outside, revision = offline_cache
    with pytest.raises(ModelLoadError, match="revision") as info:
        locate_model("org/cached", revision, cache_dir=cache, allow_local=False)
    assert "allowed: a branch or tag name" in str(info.value)
    assert str(outside) not in str(info.value)


@pytest.mark.parametrize(
    "revision", ["/etc", "a\\b", "a\x00b", "x" * 256, "refs/../../x", ".git", "a b", "v1.lock"]
)
def test_unsafe_revisions_are_refused(offline_cache, revision):
    cache, _, _ = offline_cache
    with pytest.raises(ModelLoadError, match="revision .* allowed: a branch or tag name"):
        locate_model("org/cached", revision, cache_dir=cache, allow_local=False)
