"""Every error body is ErrorBody {detail, field}; 422s name the field and what is allowed."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorBody

_LOC_ROOTS = ("body", "query", "path", "header", "form", "file", "cookie")


class ApiError(Exception):
    """An error the API returns as-is: status, message and the field to blame."""

    def __init__(
        self, status: int, detail: str, field: str | None = None, headers: dict | None = None
    ):
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers


def field_name(loc: tuple | list) -> str | None:
    """("body", "calibration", "nsamples") -> "calibration.nsamples"."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOC_ROOTS:
        parts = parts[1:]
    return ".".join(parts) or None


def _body(status: int, detail: str, field: str | None = None, headers=None) -> JSONResponse:
    content = ErrorBody(detail=detail or "error", field=field).model_dump()
    return JSONResponse(status_code=status, content=content, headers=headers)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    fields = [field_name(e.get("loc", ())) for e in errors]
    messages = []
    for err, name in zip(errors, fields, strict=True):
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        messages.append(f"{name}: {msg}" if name else msg)
    return _body(422, "; ".join(messages), next((f for f in fields if f), None))


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _body(exc.status, exc.detail, exc.field, exc.headers)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _body(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
