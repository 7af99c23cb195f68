"""A finished job's files: list, download one (Range, ETag), or all as one streamed tar."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from service.artifacts import artifact_file, tar_stream
from service.deps import JobDep, SettingsDep
from service.errors import ApiError
from service.job_record import JobRecord
from service.routes.jobs import ERRORS
from service.schemas import ArtifactList

router = APIRouter(prefix="/v1/jobs", tags=["artifacts"])


def _job_dir(settings, job: JobRecord) -> Path:
    return Path(settings.jobs_dir) / job.id


def _listed(job: JobRecord) -> list[dict]:
    return [a.model_dump() for a in job.artifacts]


@router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=ERRORS)
def list_job_artifacts(job: JobDep) -> ArtifactList:
    """Files of a succeeded job with size and sha256 (empty before it succeeds)."""
    return ArtifactList(items=job.artifacts)


@router.get("/{job_id}/artifacts/{path:path}", responses=ERRORS)
def download_artifact(path: str, job: JobDep, settings: SettingsDep, request: Request) -> Response:
    """One file, streamed; supports Range requests and ETag / If-None-Match."""
    found = artifact_file(_job_dir(settings, job), _listed(job), path)
    if found is None:
        raise ApiError(404, f"artifact {path!r} not found for this job", "path")
    file, entry = found
    etag = f'"{entry["sha256"]}"'
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(
        file, media_type="application/octet-stream", headers={"etag": etag}, filename=file.name
    )


@router.get("/{job_id}/archive", responses=ERRORS)
def download_archive(job: JobDep, settings: SettingsDep) -> StreamingResponse:
    """The whole checkpoint as one tar, streamed as it is read."""
    listed = _listed(job)
    if not listed:
        raise ApiError(404, f"job is {job.state.value}; it has no artifacts yet", "job_id")
    name = f"pruneserve-{job.id}"
    return StreamingResponse(
        tar_stream(_job_dir(settings, job), listed, name),
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar"'},
    )
