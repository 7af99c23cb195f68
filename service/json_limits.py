"""JSON from clients, parsed with limits: nesting depth checked before parsing (the parser
recurses) and integers too long to convert named, so neither becomes a 500 or a vague 400."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

MAX_JSON_DEPTH = 64  # arrays and objects; a job spec nests 3 deep, a .jsonl row rarely 5
_TOKEN = re.compile(r'\\.|["\[\]{}]', re.S)  # an escape pair, a quote or a bracket


class JsonLimitError(ValueError):
    """Valid JSON that the server refuses to parse, with the reason (e.g. its nesting)."""


def loads_limited(raw: str | bytes) -> Any:
    """json.loads, but JsonLimitError for nesting deeper than MAX_JSON_DEPTH or an integer
    longer than Python converts; json.JSONDecodeError as json.loads raises it."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(text):
        raise JsonLimitError(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels; allowed: at most {MAX_JSON_DEPTH} "
            "levels of arrays and objects"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string..."
        if "integer string conversion" not in str(exc):
            raise
        digits = sys.get_int_max_str_digits()
        raise JsonLimitError(
            f"a JSON integer with more than {digits} digits; allowed: at most {digits}"
        ) from None


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than MAX_JSON_DEPTH (one linear scan)."""
    depth, in_string = 0, False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue
        elif token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        else:
            depth -= 1
    return False


class BodyJsonError(HTTPException):
    """A JSON body over a parsing limit: 422 naming the body (raised where FastAPI parses it)."""

    field = "body"

    def __init__(self, reason: str):
        super().__init__(422, f"body: {reason}")


class LimitedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_limited(await self.body())
            except JsonLimitError as exc:
                raise BodyJsonError(str(exc)) from None
        return self._json


class LimitedJsonRoute(APIRoute):
    """A route whose JSON body is parsed by loads_limited (FastAPI calls request.json())."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def limited(request: Request):
            return await handler(LimitedJsonRequest(request.scope, request.receive))

        return limited
