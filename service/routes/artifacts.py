"""A finished job's files: list, download one (Range, ETag; HEAD too), or all as one tar.

From a bucket, a download is a redirect to a presigned URL or streamed through the API
(PRUNESERVE_ARTIFACT_DOWNLOAD); HEAD is always answered here, from the job's listing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from service.artifact_store import StoreError, open_store
from service.artifacts import artifact_file, byte_range, tar_stream
from service.deps import JobDep, SettingsDep
from service.errors import ERRORS, ApiError
from service.job_record import JobRecord
from service.schemas import ArtifactList

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])
BINARY = {"schema": {"type": "string", "format": "binary"}}


class OctetStream(FileResponse):
    media_type = "application/octet-stream"


class TarStream(StreamingResponse):
    media_type = "application/x-tar"


def _job_dir(settings, job: JobRecord) -> Path:
    return Path(settings.jobs_dir) / job.id


def _listed(job: JobRecord) -> list[dict]:
    return [a.model_dump() for a in job.artifacts]


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=ERRORS)
def list_job_artifacts(job: JobDep) -> ArtifactList:
    """Files of a succeeded job with size and sha256 (empty before it succeeds)."""
    return ArtifactList(items=job.artifacts)


FILE_RESPONSES = {**ERRORS, 200: {"content": {"application/octet-stream": BINARY}}, 304: {}}


@router.get("/{job_id}/artifacts/{path:path}", response_class=OctetStream, responses=FILE_RESPONSES)
def download_artifact(path: str, job: JobDep, settings: SettingsDep, request: Request) -> Response:
    """One file, streamed; supports Range requests and ETag / If-None-Match."""
    return _artifact(path, job, settings, request)


@router.head(
    "/{job_id}/artifacts/{path:path}", response_class=OctetStream, responses=FILE_RESPONSES
)
def head_artifact(path: str, job: JobDep, settings: SettingsDep, request: Request) -> Response:
    """The headers a download would send (size, ETag), without the body."""
    return _artifact(path, job, settings, request)


def _artifact(path: str, job: JobRecord, settings, request: Request) -> Response:
    store = open_store(settings)
    if store.remote:
        return _remote(store, path, job, settings, request)
    found = artifact_file(_job_dir(settings, job), _listed(job), path)
    if found is None:
        raise ApiError(404, f"artifact {path!r} not found for this job", "path")
    file, entry = found
    etag = f'"{entry["sha256"]}"'
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    # media_type given, or FileResponse guesses from the name (application/json for config.json)
    return OctetStream(
        file, media_type=OctetStream.media_type, headers={"etag": etag}, filename=file.name
    )


def _remote(store, path: str, job: JobRecord, settings, request: Request) -> Response:
    entry = next((a for a in _listed(job) if a["path"] == path), None)
    if entry is None:
        raise ApiError(404, f"artifact {path!r} not found for this job", "path")
    size, key = entry["size"], f"jobs/{job.id}/{path}"
    headers = {"ETag": f'"{entry["sha256"]}"', "Accept-Ranges": "bytes"}
    if headers["ETag"] in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    name = path.rsplit("/", 1)[-1]
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    if request.method == "GET" and settings.ARTIFACT_DOWNLOAD == "redirect":
        url = store.presign(key, settings.PRESIGN_TTL_S)
        return RedirectResponse(url, status_code=307, headers={"ETag": headers["ETag"]})
    wanted = byte_range(request.headers.get("range"), size)
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted or (0, size - 1)
    status = 206 if wanted else 200
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=OctetStream.media_type)
    try:
        body = store.stream(key, start, end)
    except StoreError as exc:
        log.warning("job %s: %s", job.id, exc)
        raise ApiError(503, "the artifact store did not serve this file; retry later") from None
    return StreamingResponse(body, status, headers, media_type=OctetStream.media_type)


@router.get(
    "/{job_id}/archive",
    response_class=TarStream,
    responses={**ERRORS, 200: {"content": {"application/x-tar": BINARY}}},
)
def download_archive(job: JobDep, settings: SettingsDep) -> StreamingResponse:
    """The whole checkpoint as one tar, streamed as it is read."""
    listed = _listed(job)
    if not listed:
        raise ApiError(404, f"job is {job.state.value}; it has no artifacts yet", "job_id")
    name = f"pruneserve-{job.id}"
    store = open_store(settings)
    read = (lambda rel: store.stream(f"jobs/{job.id}/{rel}")) if store.remote else None
    return TarStream(
        tar_stream(_job_dir(settings, job), listed, name, read),
        headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
    )
