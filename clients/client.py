"""PruneClient: the Python client of the pruneserve REST API (httpx, typed errors, retries)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from clients.download import fetch_artifact
from clients.errors import JobCancelled, JobFailed, WaitTimeout
from clients.transport import Transport
from service.planner.plan import Plan
from service.schemas import (
    REPORT_FILE,
    Artifact,
    ArtifactList,
    DatasetPublic,
    JobEvent,
    JobList,
    JobPublic,
    JobState,
    PruneReport,
    PruneSpec,
)

DEFAULT_URL = "http://127.0.0.1:8000"


class PruneClient:
    """Talks to one pruneserve service with one API key.

    Calls that are safe to repeat (GETs, cancel, delete, and submit, which sends an
    Idempotency-Key) are retried with exponential backoff on connection errors
    and 5xx; the others fail at once. Errors are the types in clients.errors.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ):
        self.url = url
        self.transport = Transport(url, api_key, timeout=timeout, retries=retries, backoff=backoff)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> PruneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **kwargs: Any) -> Any:
        return self.transport.request("GET", path, idempotent=True, **kwargs)

    def submit(self, spec: PruneSpec | dict, *, idempotency_key: str | None = None) -> JobPublic:
        """Queue a job. The same key is sent on every retry, so a retry never makes two jobs."""
        if isinstance(spec, dict):
            spec = PruneSpec.model_validate(spec)
        key = idempotency_key or str(uuid.uuid4())
        body = self.transport.request(
            "POST",
            "/v1/jobs",
            idempotent=True,
            json=spec.model_dump(mode="json"),
            headers={"Idempotency-Key": key},
        )
        return JobPublic.model_validate(body)

    def plan(self, spec: PruneSpec | dict, *, plan_for: str | None = None) -> Plan:
        """The service's plan for `spec` (memory per device and stage; see docs/plan.md) on
        `plan_for` devices such as "8x80GiB" (default: the workers'); no job is queued."""
        if isinstance(spec, dict):
            spec = PruneSpec.model_validate(spec)
        body = {**spec.model_dump(mode="json"), "dry_run": True, "plan_for": plan_for}
        answer = self.transport.request("POST", "/v1/jobs", idempotent=True, json=body)
        return Plan.model_validate(answer)

    def get(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._get(f"/v1/jobs/{job_id}"))

    def list(
        self,
        state: JobState | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """One page of this tenant's jobs, newest first; pass `next_cursor` on for the next."""
        params: dict[str, Any] = {}
        if state is not None:
            params["state"] = JobState(state).value
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return JobList.model_validate(self._get("/v1/jobs", params=params))

    def iter_jobs(
        self, state: JobState | str | None = None, page_size: int | None = None
    ) -> Iterator[JobPublic]:
        """Every job of this tenant, newest first, following cursors."""
        cursor = None
        while True:
            page = self.list(state=state, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def events(self, job_id: str) -> list[JobEvent]:
        return [JobEvent.model_validate(e) for e in self._get(f"/v1/jobs/{job_id}/events")]

    def cancel(self, job_id: str) -> JobPublic:
        """Cancel (idempotent: cancelling an ended job returns it as it is)."""
        body = self.transport.request("POST", f"/v1/jobs/{job_id}/cancel", idempotent=True)
        return JobPublic.model_validate(body)

    def delete(self, job_id: str) -> None:
        """Delete the job and its files (a running job is cancelled first). Idempotent: deleting
        a job you already deleted is no error; an unknown id raises NotFound."""
        self.transport.request("DELETE", f"/v1/jobs/{job_id}", idempotent=True)

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[JobPublic], None] | None = None,
        timeout: float | None = None,
        poll: float = 1.0,
    ) -> JobPublic:
        """Poll until the job ends; return it when `succeeded`.

        `on_progress(job)` is called after every poll. Raises JobFailed (with the
        job's error), JobCancelled, or WaitTimeout when `timeout` seconds pass.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state == JobState.succeeded:
                return job
            if job.state == JobState.failed:
                raise JobFailed(job)
            if job.state == JobState.cancelled:
                raise JobCancelled(job)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout or 0.0)
            time.sleep(
                poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            )

    def artifacts(self, job_id: str) -> list[Artifact]:
        return ArtifactList.model_validate(self._get(f"/v1/jobs/{job_id}/artifacts")).items

    def report(self, job_id: str) -> PruneReport:
        """A succeeded job's pruning_report.json."""
        return PruneReport.model_validate(self._get(f"/v1/jobs/{job_id}/artifacts/{REPORT_FILE}"))

    def download(self, job_id: str, dest: str | Path) -> list[Path]:
        """Download every artifact into `dest`, resuming partial files and verifying sha256.

        Raises IntegrityError (after deleting the bad file) on a mismatch.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        return [fetch_artifact(self.transport, job_id, a, dest) for a in self.artifacts(job_id)]

    def upload_dataset(self, path: str | Path) -> DatasetPublic:
        """Upload calibration text (.txt or .jsonl); use it as `upload:<id>`. Not retried."""
        path = Path(path)
        with path.open("rb") as f:
            body = self.transport.request(
                "POST", "/v1/datasets", idempotent=False, files={"file": (path.name, f)}
            )
        return DatasetPublic.model_validate(body)

    def health(self) -> dict:
        return self._get("/healthz")

    def ready(self) -> dict:
        return self._get("/readyz")
