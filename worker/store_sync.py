"""Moves a job's files between the worker's scratch directory and the artifact store: the
uploads its spec names come down before it runs, its checkpoint goes up when it is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from service.artifact_store import ArtifactStore, StoreError
from service.artifacts import list_artifacts
from service.schemas import Artifact, PruneSpec
from worker.job_events import JobEvents

UPLOAD_REF = re.compile(r"upload:([0-9a-f]{32})")


def publish(
    store: ArtifactStore, job_id: str, out: Path, events: JobEvents, check: Callable[[], None]
) -> list[Artifact]:
    """Put every file of `out` under jobs/<id>/ (sha256 first, then the upload; `check()`
    between parts may raise Cancelled); the list is what the job record shows, returned only
    once every file is complete in the store."""
    artifacts = list_artifacts(out)
    for a in artifacts:
        key = f"jobs/{job_id}/{a.path}"
        if store.remote:
            have = store.resumable_parts(key)
            again = f", resuming after {have} part(s) already stored" if have else ""
            events.add("info", f"uploading {a.path} ({a.size} bytes){again}")
        check()
        store.put(key, out / a.path, a.sha256, between=check)
    return artifacts


def fetch_uploads(store: ArtifactStore, spec: PruneSpec, upload_dir: Path) -> None:
    """Copy the uploads `spec` names (calibration.dataset = "upload:<id>") from the store into
    `upload_dir`, where the engine reads them; a local store already holds them there."""
    if not store.remote:
        return
    for uid in sorted(set(UPLOAD_REF.findall(spec.model_dump_json()))):
        if any(Path(upload_dir).glob(f"{uid}.*")):
            continue
        found = store.list(f"uploads/{uid}.")
        if not found:
            raise StoreError(f"upload:{uid} is not in {store.where}")
        Path(upload_dir).mkdir(parents=True, exist_ok=True)
        for key in found:
            store.fetch(key, Path(upload_dir) / key.removeprefix("uploads/"))
