"""A job's teacher is named as its model is: a path is refused at the boundary with the field."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings


def test_a_teacher_path_is_a_422_naming_teacher_model(tmp_path):
    app = create_app(Settings(ENV="development", ARTIFACTS_DIR=tmp_path, MODELS_DIR=tmp_path))
    spec = {
        "model": "org/sparse",
        "method": "pattern_lock",
        "sparsity": "2:4",
        "recovery": {"dataset": "wikitext2", "steps": 2},
        "teacher": {"model": "/etc/models/dense"},
    }
    with TestClient(app) as client:
        r = client.post("/v1/jobs", json=spec, headers={"Authorization": "Bearer dev-key"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "teacher.model" and "is a path" in r.json()["detail"]
