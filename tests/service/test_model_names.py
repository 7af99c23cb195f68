"""Model names: hub ids and names under MODELS_DIR pass; paths and symlinks out are refused."""

from __future__ import annotations

import pytest

from service.model_names import resolve_model


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    (root / "tiny").mkdir(parents=True)
    (root / "org" / "local").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "inside-link").symlink_to(root / "tiny")
    return root


def test_local_and_hub_names(models):
    assert resolve_model("tiny", models) == (models / "tiny").resolve()
    assert resolve_model("org/local", models) == (models / "org" / "local").resolve()
    assert resolve_model("inside-link", models) == (models / "tiny").resolve()
    assert resolve_model("meta-llama/Llama-3.2-1B", models) is None


@pytest.mark.parametrize(
    "name",
    [
        "../etc",
        "..",
        "/etc/passwd",
        "a\\b",
        "org/../tiny",
        "~/x",
        "a/b/c",
        ".hidden",
        "escape",
        "x y",
    ],
)
def test_refused(models, name):
    with pytest.raises(ValueError, match="allowed"):
        resolve_model(name, models)


def test_unknown_single_name_is_refused(models):
    with pytest.raises(ValueError, match="not under MODELS_DIR"):
        resolve_model("nope", models)
