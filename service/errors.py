"""Every error body is ErrorBody {detail, field}; 422s name the field and what is allowed."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorBody, describe_errors


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


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    described = describe_errors(exc.errors())
    messages = [f"{name}: {msg}" if name else msg for name, msg in described]
    return _body(422, "; ".join(messages), next((n for n, _ in described if n), None))


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _body(exc.status, exc.detail, exc.field, exc.headers)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _body(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http)
