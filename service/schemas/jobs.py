"""The job API's bodies: a job's creation, state, progress and events, artifacts, uploaded
datasets and error bodies."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from service.schemas.common import MAX_NAME
from service.schemas.report import ReportSummary
from service.schemas.spec import PruneSpec

PLAN_FOR_PATTERN = r"^[0-9]{1,4}[xX][0-9]{1,7}(\.[0-9]{1,3})?(MiB|GiB|TiB|MB|GB|TB)$"


class JobCreate(PruneSpec):
    """Body of POST /v1/jobs: a PruneSpec whose model is a name, never a local path."""

    model: str = Field(
        ..., min_length=1, max_length=MAX_NAME, description="hub id org/name, or a model name"
    )
    dry_run: bool = Field(
        False,
        description="answer 200 with the plan (memory per device and stage, from the "
        "model's config.json) and queue nothing",
    )
    plan_for: str | None = Field(
        None,
        max_length=32,
        pattern=PLAN_FOR_PATTERN,
        description="dry_run: plan for these devices, COUNTxSIZE such as 8x80GiB (default: "
        "the workers' devices, PRUNESERVE_PLAN_DEVICES)",
    )

    def spec(self) -> PruneSpec:
        """The job's spec: the body without the dry-run fields."""
        return PruneSpec.model_validate(self.model_dump(exclude={"dry_run", "plan_for"}))


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class Progress(BaseModel):
    """Where a running job is: stage, layer i of N, percent, ETA."""

    stage: str = "queued"
    layer: int = 0
    n_layers: int = 0
    percent: float = 0.0
    eta_s: float | None = None
    message: str | None = None
    step: int = 0  # training steps done (stage train / recover)
    n_steps: int = 0
    loss: float | None = None


class JobError(BaseModel):
    type: str
    message: str


class Artifact(BaseModel):
    path: str
    size: int
    sha256: str


class JobPublic(BaseModel):
    """A job as the API returns it."""

    id: str
    state: JobState
    spec: PruneSpec
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    summary: ReportSummary | None = None


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = None


class JobEvent(BaseModel):
    ts: datetime
    kind: Literal["state", "stage", "layer", "warning", "info", "error"]
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ArtifactList(BaseModel):
    items: list[Artifact]


class DatasetPublic(BaseModel):
    id: str
    filename: str
    size: int
    sha256: str
    created_at: datetime


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: a message, and the field when one is to blame."""

    detail: str
    field: str | None = None

    @model_validator(mode="after")
    def _nonempty(self) -> ErrorBody:
        if not self.detail:
            raise ValueError("detail must not be empty")
        return self
