"""An uploaded .jsonl may hold any training record format; a line that fits none is a 422
naming the line and the formats."""

from __future__ import annotations

import json

import pytest

from service.datasets import _check_content
from service.errors import ApiError


def test_chat_and_completion_records_upload(tmp_path):
    path = tmp_path / "chat.jsonl"
    rows = [
        {"text": "plain"},
        {"prompt": "q", "completion": "a"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _check_content(path, ".jsonl")


def test_a_record_of_no_format_is_named_by_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"question": "q"}\n')
    with pytest.raises(ApiError) as err:
        _check_content(path, ".jsonl")
    assert err.value.status == 422 and "line 2: fields ['question'] fit no format" in str(
        err.value.detail
    )
