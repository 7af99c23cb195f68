"""/docs (Swagger UI) and /redoc work offline: the pages name no other host, and every script,
style sheet and icon they load is served by the api itself, without a key."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = pytest.mark.e2e
ASSET = re.compile(r'(?:src|href)="([^"]+)"')
KINDS = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_everything_from_the_api(live_service, page):
    with httpx.Client(base_url=live_service.url, timeout=30) as c:
        html = c.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert "openapi.json" in html.text
        assert not re.search(r"https?://|//[a-z]", html.text), html.text
        urls = ASSET.findall(html.text)
        assert any(u.endswith(".js") for u in urls), urls
        for url in urls:
            r = c.get(url)
            kind = next(v for k, v in KINDS.items() if url.endswith(k))
            assert r.status_code == 200 and kind in r.headers["content-type"], (url, r.headers)
            assert len(r.content) > (1000 if url.endswith(".png") else 100_000), url


def test_the_pages_are_read_only(live_service):
    with httpx.Client(base_url=live_service.url, timeout=30) as c:
        assert c.head("/docs").status_code == 200
        r = c.post("/docs/assets/swagger-ui.css")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        assert r.json()["detail"] == "Method Not Allowed"
