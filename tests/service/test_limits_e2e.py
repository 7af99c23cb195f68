"""Request limits over real HTTP: headers, the key checked before any body byte, JSON body and
upload limits enforced while the body streams in, and string / list limits in the contract."""

from __future__ import annotations

import httpx
import pytest

from tests.service.api_process import api_process
from tests.service.raw_http import answer_and_close, answer_before_body_ends, chunk
from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {"model": TINY_MODEL, "method": "magnitude", "sparsity": 0.5}


def _post_head(svc, path: str, *extra: str) -> list[str]:
    return [f"POST {path} HTTP/1.1", *extra]


def test_key_is_checked_before_the_body_is_read(live_service):
    head = _post_head(
        live_service, "/v1/jobs", "Content-Type: application/json", "Content-Length: 1000000"
    )
    status, headers, body = answer_before_body_ends(live_service.url, head, b'{"model": ')
    assert status == 401 and "API key" in body["detail"], body
    assert headers["www-authenticate"] == "Bearer"


def test_declared_body_over_the_limit_is_413_before_it_is_sent(live_service):
    head = _post_head(
        live_service,
        "/v1/jobs",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: application/json",
        "Content-Length: 1000000",
    )
    status, _, body = answer_before_body_ends(live_service.url, head, b"")
    assert status == 413 and body["field"] == "body" and "65536" in body["detail"], body


def test_streamed_body_is_413_as_soon_as_it_crosses_the_limit(live_service):
    head = _post_head(
        live_service,
        "/v1/jobs",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    part = chunk(b'{"skip": ["' + b"x" * 70_000)  # never finished: the answer cannot wait
    status, _, body = answer_before_body_ends(live_service.url, head, part)
    assert status == 413 and body["field"] == "body", body


def test_upload_is_413_as_soon_as_the_file_crosses_the_limit_and_leaves_no_file(live_service):
    uploads = live_service.artifacts_dir / "uploads"
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    head = _post_head(
        live_service,
        "/v1/datasets",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: multipart/form-data; boundary=XYZ",
        "Transfer-Encoding: chunked",
    )
    part = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
    limit = 1024 * 1024  # live_service's PRUNESERVE_MAX_UPLOAD_BYTES
    body_start = chunk(part + b"a" * (limit + 10))  # the rest of the body is never sent
    status, _, body = answer_before_body_ends(live_service.url, head, body_start)
    assert status == 413 and body["field"] == "file" and str(limit) in body["detail"], body
    assert set(uploads.iterdir()) == before


def test_upload_with_wrong_type_is_refused_from_its_headers(live_service):
    head = _post_head(
        live_service,
        "/v1/datasets",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: multipart/form-data; boundary=XYZ",
        "Transfer-Encoding: chunked",
    )
    part = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="w.bin"\r\n\r\nab'
    status, _, body = answer_before_body_ends(live_service.url, head, chunk(part))
    assert status == 422 and body["field"] == "file" and ".jsonl" in body["detail"], body


@pytest.mark.parametrize("valid_first", [True, False])
def test_two_authorization_headers_are_400_whichever_comes_last(live_service, valid_first):
    pair = [("Authorization", f"Bearer {live_service.api_key}"), ("Authorization", "Bearer x")]
    headers = pair if valid_first else pair[::-1]
    r = httpx.get(f"{live_service.url}/v1/jobs", headers=headers)
    assert r.status_code == 400 and r.json()["field"] == "Authorization", r.text
    assert "one Authorization header" in r.json()["detail"], r.text


@pytest.fixture(scope="module")
def slow_body_api(live_service, tmp_path_factory):
    """An api that waits 1 s for the next part of a body; its own uploads folder."""
    root = tmp_path_factory.mktemp("body-timeout")
    with api_process(
        live_service, root, BODY_TIMEOUT_S="1", UPLOADS_DIR=str(root / "uploads")
    ) as url:
        yield url, root / "uploads"


def test_a_json_body_that_stalls_is_408_and_the_connection_closed(live_service, slow_body_api):
    url, _ = slow_body_api
    head = _post_head(
        live_service,
        "/v1/jobs",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: application/json",
        "Content-Length: 100",
    )
    status, headers, body = answer_and_close(url, head, b'{"model": "tiny-llama", "meth')
    assert status == 408 and body["field"] == "body" and "1 s" in body["detail"], body
    assert headers["connection"] == "close"


def test_an_upload_that_stalls_is_408_and_leaves_no_file(live_service, slow_body_api):
    url, uploads = slow_body_api
    head = _post_head(
        live_service,
        "/v1/datasets",
        f"Authorization: Bearer {live_service.api_key}",
        "Content-Type: multipart/form-data; boundary=XYZ",
        "Content-Length: 100000",
    )
    part = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
    status, _, body = answer_and_close(url, head, part + b"word " * 1000)
    assert status == 408 and body["field"] == "body", body
    assert not uploads.exists() or list(uploads.iterdir()) == []


def test_oversized_authorization_header_is_431(live_service):
    r = httpx.get(f"{live_service.url}/v1/jobs", headers={"Authorization": "Bearer " + "k" * 4096})
    assert r.status_code == 431 and r.json()["field"] == "Authorization", r.text


def test_oversized_headers_are_431(live_service):
    headers = {**live_service.headers(), **{f"X-Pad-{i}": "p" * 1000 for i in range(20)}}
    r = httpx.get(f"{live_service.url}/v1/jobs", headers=headers)
    assert r.status_code == 431 and r.json()["field"] == "headers", r.text


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"model": "m" * 300}, "model"),
        ({"model": "org/" + "m" * 252}, "model"),
        ({"revision": "r" * 300}, "revision"),
        ({"revision": "../../../../artifacts/uploads/x.txt"}, "revision"),
        ({"revision": "/etc/passwd"}, "revision"),
        ({"skip": ["*.q_proj"] * 257}, "skip"),
        ({"skip": ["s" * 300]}, "skip.0"),
    ],
)
def test_long_or_unsafe_strings_and_lists_are_422(live_service, patch, field):
    with live_service.client() as c:
        r = c.post("/v1/jobs", json={**SPEC, **patch})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.text
    assert "allowed" in r.json()["detail"] or "at most" in r.json()["detail"], r.text


def test_malformed_json_names_the_body(live_service):
    with live_service.client() as c:
        r = c.post(
            "/v1/jobs",
            content=b'{"model": "x", oops}',
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 422 and r.json()["field"] == "body", r.text
    assert r.json()["detail"].startswith("body: not valid JSON")


def test_invalid_utf8_body_is_400_naming_the_body(live_service):
    with live_service.client() as c:
        r = c.post(
            "/v1/jobs",
            content=b'{"model": "\xff\xfe"}',
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 400 and r.json()["field"] == "body", r.text


def test_headers_that_never_end_are_cut_off_at_a_bound(live_service):
    """A 64 MiB Authorization header is refused after a bounded read, not buffered whole."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(live_service.url)
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=20) as s:
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        try:
            for _ in range(64):
                s.sendall(b"k" * (1024 * 1024))
                sent += 1
        except OSError:  # the server closed the connection: what we want
            pass
        try:
            answer = s.recv(200)
        except ConnectionResetError:
            answer = b""
    assert sent < 64, "the server read 64 MiB of headers"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
