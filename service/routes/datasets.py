"""Calibration text uploads, usable as calibration.dataset = "upload:<id>" by their tenant."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import DatasetsDep, TenantDep
from service.errors import responses
from service.schemas import DatasetPublic

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
_DISPOSITION = r'^form-data; name="file"; filename="[^"/\\]*\.(txt|jsonl|TXT|JSONL)"$'
# The body is streamed by the handler (never spooled whole), so the schema is declared here.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "UTF-8 text; the file name ends in .txt or .jsonl",
                        }
                    },
                },
                "encoding": {
                    "file": {
                        "headers": {
                            "Content-Disposition": {
                                "schema": {
                                    "type": "string",
                                    "pattern": _DISPOSITION,
                                    "example": 'form-data; name="file"; filename="corpus.txt"',
                                }
                            }
                        }
                    }
                },
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses=responses(400, 401, 408, 413, 422, 431, 503, 507),
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(
    request: Request, tenant: TenantDep, datasets: DatasetsDep
) -> DatasetPublic:
    """Upload a .txt or .jsonl (one {"text": ...} per line) file, size-limited."""
    return await datasets.save(tenant, request)
