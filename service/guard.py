"""A pure ASGI middleware that refuses oversized headers, missing, repeated or bad API keys and
oversized bodies before any body byte is read, so no unauthenticated or unbounded input costs
memory, and a body that stops arriving is answered (408) instead of holding its connection.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import tenant_for_header
from service.errors import ApiError, error_response
from service.fast_poll import StatusPoll
from service.settings import Settings

UPLOAD_PATH = "/v1/datasets"
MULTIPART_SLACK = 64 * 1024  # part headers and boundaries around the uploaded file


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses its limit (413, field "body")."""

    field = "body"

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodyTimeout(HTTPException):
    """Raised from `receive` when no part of a body arrived for BODY_TIMEOUT_S (408, field
    "body"); the connection is closed after the answer, the rest of the body is never read."""

    field = "body"

    def __init__(self, seconds: float):
        detail = (
            f"the request body stopped arriving: nothing for {seconds:g} s before it was "
            "complete; send it without pauses that long"
        )
        super().__init__(408, detail, headers={"Connection": "close"})


class RequestGuard:
    """Header limits for every request; for /v1 also the API key and the body limit."""

    def __init__(self, app: ASGIApp, settings: Settings, poll: StatusPoll | None = None):
        self.app, self.settings, self.poll = app, settings, poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            limit = self._check(scope)
        except ApiError as exc:
            return await error_response(exc)(scope, receive, send)
        tenant = scope.get("state", {}).get("tenant")
        if self.poll is not None and tenant is not None and await self.poll(scope, send, tenant):
            return
        await self.app(scope, _limited(receive, limit, self.settings.BODY_TIMEOUT_S), send)

    def _check(self, scope: Scope) -> int:
        """The body limit for this request, after its headers and key are checked."""
        headers = dict(scope["headers"])
        s = self.settings
        if sum(len(k) + len(v) for k, v in scope["headers"]) > s.MAX_HEADER_BYTES:
            raise ApiError(431, f"request headers exceed {s.MAX_HEADER_BYTES} bytes", "headers")
        auths = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(auths) > 1:  # a proxy may read the first, we the last: refuse to pick
            raise ApiError(400, f"send one Authorization header, not {len(auths)}", "Authorization")
        auth = auths[0] if auths else b""
        if len(auth) > s.MAX_AUTH_HEADER_BYTES:
            raise ApiError(
                431, f"the header exceeds {s.MAX_AUTH_HEADER_BYTES} bytes", "Authorization"
            )
        path = scope["path"]
        if path == "/v1" or path.startswith("/v1/"):
            tenant = tenant_for_header(s, auth.decode("latin-1"))
            scope.setdefault("state", {})["tenant"] = tenant
        limit = s.MAX_BODY_BYTES
        if path.rstrip("/") == UPLOAD_PATH:
            limit = s.MAX_UPLOAD_BYTES + MULTIPART_SLACK
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(
                413, f"the request body is larger than the limit of {limit} bytes", "body"
            )
        return limit


def _limited(receive: Receive, limit: int, timeout: float) -> Receive:
    """`receive`, raising BodyTooLarge as soon as more than `limit` body bytes arrived and
    BodyTimeout when the body's next part takes longer than `timeout` seconds."""
    seen, done = 0, False

    async def wrapped() -> Message:
        nonlocal seen, done
        if done:  # the body is complete: what follows is the wait for a disconnect
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except TimeoutError:
            raise BodyTimeout(timeout) from None
        done = message["type"] != "http.request" or not message.get("more_body", False)
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped
