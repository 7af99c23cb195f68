"""Every error body is ErrorBody {detail, field}; 422s name the field and what is allowed.

Redis down is 503 with Retry-After; an unexpected error is a 500 JSON body, logged in full.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from service.schemas import ErrorBody, describe_errors

log = logging.getLogger("pruneserve.api")
RETRY_AFTER_S = 5
FASTAPI_BODY_ERROR = "There was an error parsing the body"  # FastAPI's 400, e.g. bad UTF-8
_WHY = {
    400: "The body could not be parsed",
    401: "Missing or invalid API key",
    404: "Not found (or another tenant's)",
    408: "The body stopped arriving; connection closed",
    409: "Conflict with the job's state",
    413: "Body or upload over its size limit",
    422: "Invalid input; `field` names it",
    431: "Request headers too large",
    503: "The job store (Redis) is unreachable; retry",
    507: "No space left to store the upload",
}


def responses(*codes: int) -> dict:
    """OpenAPI `responses` entries for these error statuses, each an ErrorBody."""
    return {c: {"model": ErrorBody, "description": _WHY.get(c, "Error")} for c in codes}


ERRORS = responses(400, 401, 404, 409, 413, 422, 431, 503)
BODY_ERRORS = responses(408)  # routes that read a body


class ApiError(Exception):
    """An error the API returns as-is: status, message and the field to blame."""

    def __init__(
        self, status: int, detail: str, field: str | None = None, headers: dict | None = None
    ):
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers


def _body(status: int, detail: str, field: str | None = None, headers=None) -> JSONResponse:
    content = ErrorBody(detail=detail or "error", field=field).model_dump()
    return JSONResponse(status_code=status, content=content, headers=headers)


def error_response(exc: ApiError) -> JSONResponse:
    return _body(exc.status, exc.detail, exc.field, exc.headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    described = describe_errors(exc.errors())
    messages = [f"{name}: {msg}" if name else msg for name, msg in described]
    return _body(422, "; ".join(messages), next((n for n, _ in described if n), None))


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail, field = str(exc.detail), getattr(exc, "field", None)
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 400 and detail == FASTAPI_BODY_ERROR:
        detail, field = "body: not valid UTF-8 JSON", "body"
    if exc.status_code == 405:  # one path may have several routes (GET and POST): list all
        # paths outside the schema (/docs, its assets, /openapi.json) are read-only pages
        headers["Allow"] = ", ".join(_allowed(request)) or headers.get("Allow", "GET, HEAD")
    return _body(exc.status_code, detail, field, headers or None)


def _allowed(request: Request) -> list[str]:
    """Every documented method of the request's path (the OpenAPI paths are the routes)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods)


async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("job store unreachable on %s %s: %r", request.method, request.url.path, exc)
    detail = "the job store (Redis) is unreachable; retry later"
    return _body(503, detail, None, {"Retry-After": str(RETRY_AFTER_S)})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _body(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(redis.RedisError, _store_down)
    app.add_exception_handler(OperationalError, _store_down)
    app.add_exception_handler(Exception, _unexpected)
