"""The job record as stored in Redis: one typed model (JobPublic is the part the API shows)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from service.schemas import Artifact, JobPublic, JobState


class JobRecord(JobPublic):
    """Everything known about one job (what the API shows, plus what it does not); changed
    only through service.job_state."""

    model_config = ConfigDict(extra="ignore")  # records written by older versions still load

    tenant: str
    state: JobState = JobState.queued
    artifacts: list[Artifact] = Field(default_factory=list)
    owner: str | None = None  # host:pid:nonce of the process running it
    idem_key: str | None = None  # the Redis key of its Idempotency-Key, removed with the job

    def public(self) -> JobPublic:
        """The job as the API returns it (no tenant, owner or artifact list)."""
        return JobPublic.model_validate(self.model_dump(include=set(JobPublic.model_fields)))
