"""Jobs: submit, read, list, events, cancel, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse

from service import job_delete
from service.deps import (
    CeleryDep,
    DatasetsDep,
    JobDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    job_not_found,
)
from service.dry_run import dry_run
from service.errors import BODY_ERRORS, ERRORS, ApiError
from service.job_record import JobRecord
from service.jobs import IdempotencyConflict
from service.json_limits import LimitedJsonRoute
from service.planner.plan import Plan
from service.queue import dispatch
from service.redact import redact_paths
from service.schemas import JobCreate, JobEvent, JobList, JobPublic, JobState
from service.validation import check_spec

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=LimitedJsonRoute)


def to_public(rec: JobRecord) -> JobPublic:
    job = rec.public()
    if job.error is not None:  # worker messages may hold server paths
        job.error.message = redact_paths(job.error.message)
    return job


PLANNED = {200: {"model": Plan, "description": "dry_run: the plan; no job is queued"}}


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={**PLANNED, **ERRORS, **BODY_ERRORS},
)
def create_job(
    body: JobCreate,
    tenant: TenantDep,
    store: StoreDep,
    datasets: DatasetsDep,
    settings: SettingsDep,
    celery: CeleryDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a pruning job (the same Idempotency-Key returns the same job); with dry_run,
    answer its plan and queue nothing."""
    check_spec(body, tenant, settings, datasets)
    if body.dry_run:
        return JSONResponse(dry_run(body, settings).model_dump(mode="json"))
    try:
        rec, created = store.create(tenant, body.spec(), idempotency_key)
    except IdempotencyConflict as exc:
        raise ApiError(409, str(exc), "Idempotency-Key") from None
    if created:
        dispatch(celery, settings, store, rec.id)
    return to_public(rec)


@router.get("", response_model=JobList, responses=ERRORS)
def list_jobs(
    tenant: TenantDep,
    store: StoreDep,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
) -> JobList:
    """The caller's jobs, newest first; pass next_cursor back as cursor for the next page."""
    state_value = state.value if state else None
    items, nxt = store.list(tenant, state_value, limit, int(cursor) if cursor else None)
    return JobList(items=[to_public(r) for r in items], next_cursor=nxt)


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS)
async def get_job(job: JobDep) -> JobPublic:
    """State, progress, timestamps, error and report summary of one job."""
    return to_public(job)


@router.get("/{job_id}/events", response_model=list[JobEvent], responses=ERRORS)
def job_events(job: JobDep, store: StoreDep) -> list[JobEvent]:
    """The job's event log: state and stage changes, per-layer lines, warnings."""
    events = [JobEvent.model_validate(e) for e in store.events(job.id)]
    for event in events:
        event.message = redact_paths(event.message)
    return events


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=ERRORS)
def cancel_job(job: JobDep, store: StoreDep) -> JobPublic:
    """A queued job never starts; a running one stops within seconds, in any stage."""
    state = job.state
    if state == JobState.cancelled:
        return to_public(job)
    if state.terminal:
        raise ApiError(409, f"job is already {state.value}; only queued or running jobs cancel")
    return to_public(store.request_cancel(job.id) or job)


DELETED = {204: {"description": "Deleted now, or already deleted by you"}}


@router.delete(
    "/{job_id}", status_code=204, response_class=Response, responses={**DELETED, **ERRORS}
)
def delete_job(job_id: str, tenant: TenantDep, store: StoreDep) -> Response:
    """Delete the job, its files and events (a running job is cancelled first); again: 204."""
    if not job_delete.delete(store, tenant, job_id):
        raise job_not_found(job_id)
    return Response(status_code=204)
