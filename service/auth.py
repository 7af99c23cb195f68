"""API keys -> tenant: every request carries `Authorization: Bearer <key>`."""

from __future__ import annotations

from fastapi import Request

from service.errors import ApiError
from service.settings import Settings

CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Unauthorized(ApiError):
    def __init__(self, detail: str):
        super().__init__(401, detail, headers=CHALLENGE)


def bearer(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent or malformed."""
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def tenant_for_header(settings: Settings, header: str) -> str:
    """The tenant owning the header's Bearer key; 401 when absent or unknown."""
    key = bearer(header)
    if key is None:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    tenant = settings.tenant_for(key)
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant


async def tenant_from_request(request: Request) -> str:
    """The tenant RequestGuard found for this request (it checks the key before the body)."""
    tenant = request.scope.get("state", {}).get("tenant")
    if tenant is not None:
        return tenant
    return tenant_for_header(request.app.state.settings, request.headers.get("authorization", ""))
