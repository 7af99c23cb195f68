"""The OpenAPI document tells the truth: media types, HEAD on artifacts, Allow on 405, the 400
for a body that is not UTF-8, and the schema refuses what the server refuses (sparsity 0.0)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.live_service import TINY_MODEL

pytestmark = pytest.mark.e2e
SPEC = {
    "model": TINY_MODEL,
    "method": "magnitude",
    "sparsity": 0.5,
    "calibration": {"nsamples": 2, "seqlen": 16},
}


@pytest.fixture(scope="module")
def doc(live_service) -> dict:
    return httpx.get(f"{live_service.url}/openapi.json").raise_for_status().json()


@pytest.fixture(scope="module")
def done_job(live_service):
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).raise_for_status().json()
        return live_service.wait_job(c, job["id"], ("succeeded",))


def _ok_types(doc, path, method="get") -> list[str]:
    return list(doc["paths"][path][method]["responses"]["200"]["content"])


def test_success_media_types(doc):
    assert _ok_types(doc, "/metrics") == ["text/plain"]
    assert _ok_types(doc, "/v1/jobs/{job_id}/archive") == ["application/x-tar"]
    assert _ok_types(doc, "/v1/jobs/{job_id}/artifacts/{path}") == ["application/octet-stream"]
    assert _ok_types(doc, "/v1/jobs/{job_id}/artifacts/{path}", "head") == [
        "application/octet-stream"
    ]


def test_error_bodies_are_json_error_body_and_400_is_documented(doc):
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status[0] in "45":
                    assert response["content"] == {"application/json": {"schema": ref}}, (
                        path,
                        method,
                        status,
                    )
    assert "400" in doc["paths"]["/v1/jobs"]["post"]["responses"]


def test_schema_refuses_sparsity_zero_as_the_server_does(doc, live_service):
    number = doc["components"]["schemas"]["JobCreate"]["properties"]["sparsity"]["anyOf"][0]
    assert number == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    with live_service.client() as c:
        assert c.post("/v1/jobs", json={**SPEC, "sparsity": 0.0}).status_code == 422


def test_schema_states_the_upload_file_name_rule(doc):
    body = doc["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    disposition = body["encoding"]["file"]["headers"]["Content-Disposition"]["schema"]
    assert r"\.(txt|jsonl" in disposition["pattern"]


def test_head_on_an_artifact_sends_its_headers_only(live_service, done_job):
    url = f"{live_service.url}/v1/jobs/{done_job['id']}/artifacts/config.json"
    got = httpx.get(url, headers=live_service.headers())
    head = httpx.head(url, headers=live_service.headers())
    assert head.status_code == 200 and head.content == b""
    assert got.headers["content-type"] == head.headers["content-type"] == "application/octet-stream"
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["etag"] == got.headers["etag"]


def test_unsupported_method_is_405_listing_every_allowed_one(live_service):
    r = httpx.request("OPTIONS", f"{live_service.url}/v1/jobs", headers=live_service.headers())
    assert r.status_code == 405 and set(r.json()) == {"detail", "field"}
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
