"""API keys -> tenant: every request carries `Authorization: Bearer <key>`."""

from __future__ import annotations

from fastapi import Request

from service.errors import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Unauthorized(ApiError):
    def __init__(self, detail: str):
        super().__init__(401, detail, headers=CHALLENGE)


async def tenant_from_request(request: Request) -> str:
    """The tenant owning the request's Bearer key; 401 when absent or unknown."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    tenant = request.app.state.settings.tenant_for(key.strip())
    if tenant is None:
        raise Unauthorized("invalid API key")
    return tenant
