"""The job record as stored in Redis: one typed model (JobPublic is the part the API shows)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import (
    Artifact,
    JobError,
    JobPublic,
    JobState,
    Progress,
    PruneSpec,
    ReportSummary,
)


class JobRecord(BaseModel):
    """Everything known about one job; changed only through service.job_state."""

    model_config = ConfigDict(extra="ignore")  # records written by older versions still load

    id: str
    tenant: str
    state: JobState = JobState.queued
    spec: PruneSpec
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    summary: ReportSummary | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    owner: str | None = None  # host:pid:nonce of the process running it

    def public(self) -> JobPublic:
        """The job as the API returns it (no tenant, owner or artifact list)."""
        return JobPublic.model_validate(self, from_attributes=True)
