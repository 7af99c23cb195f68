"""Annotated dependencies the route handlers declare: settings, stores, the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from service.auth import tenant_from_request
from service.datasets import DatasetStore
from service.errors import ApiError
from service.job_record import JobRecord
from service.jobs import JobStore
from service.settings import Settings


# Dependencies are async so they run on the event loop: a sync one costs a thread-pool hop per
# request, the largest cost of a status poll when profiled.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_datasets(request: Request) -> DatasetStore:
    return request.app.state.datasets


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DatasetsDep = Annotated[DatasetStore, Depends(get_datasets)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
TenantDep = Annotated[str, Depends(tenant_from_request)]


async def get_job(job_id: str, tenant: TenantDep, store: StoreDep) -> JobRecord:
    """The caller's job; 404 for unknown ids and for other tenants' jobs alike."""
    rec = await store.aget_for_tenant(tenant, job_id)
    if rec is None:
        raise job_not_found(job_id)
    return rec


def job_not_found(job_id: str) -> ApiError:
    """The one answer for an unknown id and for another tenant's job."""
    return ApiError(404, f"job {job_id!r} not found", "job_id")


JobDep = Annotated[JobRecord, Depends(get_job)]
