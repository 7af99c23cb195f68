"""The OpenAPI document, corrected where FastAPI's defaults would not tell the truth: error
bodies are always JSON ErrorBody, whatever the success media type; /v1 needs a Bearer key.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def install(app: FastAPI) -> None:
    """Replace app.openapi with a cached, corrected document."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            doc.setdefault("components", {})["securitySchemes"] = BEARER
            for name, path in doc["paths"].items():
                for operation in path.values():
                    if name.startswith("/v1") or name == "/metrics":
                        operation["security"] = [{"bearer": []}]
                    for status, response in operation.get("responses", {}).items():
                        if status[0] in "45":
                            response["content"] = ERROR_CONTENT
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
