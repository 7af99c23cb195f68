"""Errors are JSON {detail, field} with the right status: Redis down (503, Retry-After), a full
disk under an upload (507, no file left), and job errors that never show server paths."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.service.api_process import api_process
from tests.support.live_service import TINY_MODEL, _free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def redis_down_uploads(tmp_path_factory) -> Path:
    """The uploads folder of `redis_down_api` (its own, so what it leaves can be seen)."""
    return tmp_path_factory.mktemp("redis-down") / "uploads"


@pytest.fixture(scope="module")
def redis_down_api(live_service, redis_down_uploads):
    """An api whose Redis URL points at a port nothing listens on."""
    root = redis_down_uploads.parent
    with api_process(
        live_service,
        root,
        REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0",
        UPLOADS_DIR=str(redis_down_uploads),
    ) as url:
        yield url


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef"),
        ("POST", "/v1/jobs/0123456789abcdef0123456789abcdef/cancel"),
        ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef/artifacts"),
        ("POST", "/v1/datasets"),
        ("GET", "/metrics"),
    ],
)
def test_redis_down_is_503_json_with_retry_after(live_service, redis_down_api, method, path):
    spec = {"model": TINY_MODEL, "method": "magnitude", "sparsity": 0.5}
    key = live_service.metrics_token if path == "/metrics" else live_service.api_key
    kwargs = {"json": spec} if path == "/v1/jobs" and method == "POST" else {}
    if path == "/v1/datasets":
        kwargs = {"files": {"file": ("a.txt", b"some calibration text")}}
    r = httpx.request(
        method,
        redis_down_api + path,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        **kwargs,
    )
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    assert "Redis" in r.json()["detail"] and set(r.json()) == {"detail", "field"}


def test_an_upload_refused_for_redis_down_leaves_no_file(
    live_service, redis_down_api, redis_down_uploads
):
    """The file is streamed to disk before its record is written: no record, no file."""
    r = httpx.post(
        redis_down_api + "/v1/datasets",
        headers=live_service.headers(),
        timeout=60,
        files={"file": ("corpus.txt", b"calibration text " * 1000)},
    )
    assert r.status_code == 503, r.text
    assert list(redis_down_uploads.iterdir()) == []


def test_redis_down_leaves_healthz_up_and_readyz_not_ready(redis_down_api):
    assert httpx.get(redis_down_api + "/healthz").json() == {"status": "ok"}
    r = httpx.get(redis_down_api + "/readyz")
    assert r.status_code == 503 and r.json() == {"detail": "not ready", "field": None}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_upload_onto_a_full_disk_is_507_and_leaves_no_file(live_service, tiny_disk, tmp_path):
    with api_process(
        live_service, tmp_path, UPLOADS_DIR=str(tiny_disk), MAX_UPLOAD_BYTES=str(4 * 1024 * 1024)
    ) as url:
        r = httpx.post(
            url + "/v1/datasets",
            headers=live_service.headers(),
            timeout=60,
            files={"file": ("big.txt", b"word " * (400 * 1024))},
        )
    assert r.status_code == 507, r.text
    assert r.json()["field"] == "file" and "space" in r.json()["detail"]
    assert list(tiny_disk.iterdir()) == []


def test_job_errors_name_the_input_not_server_paths(live_service):
    """c4 is absent from the data dir and the hub is offline: the job fails naming c4."""
    spec = {
        "model": TINY_MODEL,
        "method": "wanda",
        "sparsity": 0.5,
        "calibration": {"dataset": "c4", "nsamples": 2, "seqlen": 16},
    }
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        job = live_service.wait_job(c, job["id"], ("failed",))
        events = c.get(f"/v1/jobs/{job['id']}/events").json()
    message = job["error"]["message"]
    assert "c4" in message, message
    for text in [message, *(e["message"] for e in events)]:
        assert str(live_service.root) not in text, text


def test_an_nm_width_error_names_the_spec_field_skip(live_service):
    """A REST user is told the spec field `skip`, not only the CLI's --skip flag."""
    from tests.support.tiny_models import make_tiny_model

    name = "tiny-llama-mlp48"
    if not (live_service.models_dir / name).is_dir():
        make_tiny_model("llama_mlp48", live_service.models_dir / name)
    spec = {"model": name, "method": "magnitude", "sparsity": "1:32"}
    with live_service.client() as c:
        job = c.post("/v1/jobs", json=spec).raise_for_status().json()
        job = live_service.wait_job(c, job["id"], ("failed",))
    message = job["error"]["message"]
    assert "mlp.down_proj has 48 inputs" in message, message
    assert "to `skip` (CLI: --skip)" in message and "2, 4, 8 or 16" in message, message
