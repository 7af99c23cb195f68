"""The web console at /ui: static files from service/console, served by the API itself (no
CDN), with a policy that lets the page talk only to this origin."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

CONSOLE_DIR = Path(__file__).with_name("console")
UI_PATH = "/ui"
POLICY = (
    "default-src 'self'; img-src 'self' blob:; connect-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'self'"
)


class ConsoleFiles(StaticFiles):
    """StaticFiles whose answers carry the content policy and no caching of the page."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", POLICY.encode()),
                    (b"cache-control", b"no-cache"),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_policy)


def install(app: FastAPI) -> None:
    """Serve the console's files at /ui/ (and send /ui there)."""
    app.add_route(UI_PATH, lambda request: RedirectResponse(f"{UI_PATH}/"), include_in_schema=False)
    app.mount(UI_PATH, ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
