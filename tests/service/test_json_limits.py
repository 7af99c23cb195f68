"""JSON from clients parsed with limits: nesting depth found before parsing, long integers
named, and brackets inside strings never counted."""

from __future__ import annotations

import json

import pytest

from service.json_limits import MAX_JSON_DEPTH, JsonLimitError, loads_limited


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_parses_what_json_parses():
    text = '{"text": "a [b] {c} \\" [[[", "x": [1, [2, {"y": null}]]}'
    assert loads_limited(text) == json.loads(text)
    assert loads_limited(text.encode()) == json.loads(text)


def test_nesting_at_the_limit_parses_and_one_deeper_is_refused():
    assert loads_limited(nested(MAX_JSON_DEPTH)) is not None
    with pytest.raises(JsonLimitError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        loads_limited(nested(MAX_JSON_DEPTH + 1))


def test_a_very_deep_document_is_refused_not_a_recursion_error():
    with pytest.raises(JsonLimitError, match="nested deeper"):
        loads_limited('{"text":"a","x":' + nested(100_000) + "}")


def test_brackets_inside_strings_and_after_escapes_do_not_count():
    deep_text = '"' + "[{" * 5000 + '\\"' + "[" * 100 + '"'
    assert loads_limited('{"text": ' + deep_text + "}")["text"].startswith("[{[{")


def test_an_integer_longer_than_python_converts_is_named():
    with pytest.raises(JsonLimitError, match="integer with more than 4300 digits"):
        loads_limited('{"nsamples": ' + "1" * 5000 + "}")


def test_malformed_json_still_raises_the_decode_error():
    with pytest.raises(json.JSONDecodeError):
        loads_limited('{"model": "x", oops}')
