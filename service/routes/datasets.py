"""Calibration text uploads, usable as calibration.dataset = "upload:<id>" by their tenant."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile

from service.deps import DatasetsDep, TenantDep
from service.routes.jobs import ERRORS
from service.schemas import DatasetPublic, ErrorBody

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={**ERRORS, 413: {"model": ErrorBody}},
)
async def upload_dataset(
    file: UploadFile, tenant: TenantDep, datasets: DatasetsDep
) -> DatasetPublic:
    """Upload a .txt or .jsonl (one {"text": ...} per line) file, size-limited."""
    try:
        return await datasets.save(tenant, file)
    finally:
        await file.close()
