"""HTTP with the API key, typed errors and retries with exponential backoff.

Only idempotent calls are retried (GET, cancel, delete, and submissions that carry an
Idempotency-Key): on connection errors and 5xx answers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from clients.errors import ConnectionFailed, error_from_response

RETRY_STATUS = frozenset({500, 502, 503, 504})


class Transport:
    """One httpx.Client bound to the service URL and key."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ):
        headers = {"User-Agent": "pruneserve-client"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def close(self) -> None:
        self.http.close()

    def sleep_before(self, attempt: int) -> None:
        """Exponential backoff with jitter before retry number `attempt` (1-based)."""
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        time.sleep(delay * (0.5 + random.random() / 2))

    def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> Any:
        """Send, retry when safe, raise a typed error on 4xx/5xx; return the JSON body."""
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            if attempt:
                self.sleep_before(attempt)
            try:
                resp = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    continue
                raise ConnectionFailed(f"cannot reach {self.http.base_url}: {exc!r}") from exc
            if resp.status_code in RETRY_STATUS and attempt + 1 < attempts:
                continue
            if resp.is_error:
                raise error_from_response(resp)
            return resp.json() if resp.content else None
        raise AssertionError("unreachable")

    @contextmanager
    def stream(self, path: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """A streamed GET that follows a redirect to a presigned URL (httpx drops the API key
        on the way to another origin; Range goes along); the caller handles retries."""
        try:
            with self.http.stream("GET", path, headers=headers, follow_redirects=True) as resp:
                if resp.is_error and resp.status_code != 416:
                    resp.read()
                    raise error_from_response(resp)
                yield resp
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"download of {path} interrupted: {exc!r}") from exc
