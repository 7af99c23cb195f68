"""Server paths in job messages are cut to their last two components; names are left alone."""

from __future__ import annotations

import pytest

from service.redact import redact_paths


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/srv/pruneserve/models/tiny-llama has no config.json", ".../models/tiny-llama has"),
        ("dataset 'c4': /data/corpora/c4/train.json.gz not found", "': .../c4/train.json.gz not"),
        ("[Errno 28] No space: '/var/lib/a/b/x.safetensors'", "'.../b/x.safetensors'"),
    ],
)
def test_absolute_paths_are_cut(text, shown):
    out = redact_paths(text)
    assert shown in out and "/srv" not in out and "/data/corpora" not in out and "/var" not in out


@pytest.mark.parametrize(
    "text", ["model org/name not found", "sparsity 2/4", "see https://hf.co/org/name/tree/main"]
)
def test_names_and_urls_are_kept(text):
    assert redact_paths(text) == text
