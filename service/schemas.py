"""The wire contract: one set of pydantic models shared by the API, the worker,
the local `pruneserve prune` command and the client. Pure pydantic, no torch.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

METHODS = ("magnitude", "wanda", "sparsegpt")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
NAMED_DATASETS = ("wikitext2", "c4")
REPORT_FILE = "pruning_report.json"  # written next to every pruned checkpoint
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_LOC_ROOTS = ("body", "query", "path", "header", "form", "file", "cookie")


def describe_errors(errors: list[dict]) -> list[tuple[str | None, str]]:
    """pydantic errors -> (field such as "calibration.nsamples", message) pairs, as the API
    and the CLI print them."""
    out = []
    for err in errors:
        parts = [str(p) for p in err.get("loc", ())]
        if parts and parts[0] in _LOC_ROOTS:
            parts = parts[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append((".".join(parts) or None, msg))
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Sparsity(_Strict):
    """A parsed sparsity: a fraction (unstructured) or N zeros in every M weights."""

    ratio: float
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:g}"


def parse_sparsity(value: float | str) -> Sparsity:
    """'2:4' -> N:M; 0.5 or '0.5' -> unstructured. Raises ValueError with what is allowed."""
    allowed = 'allowed: a fraction in (0, 1) such as 0.5, or "N:M" with 0 < N < M such as "2:4"'
    if isinstance(value, bool):
        raise ValueError(f"sparsity {value!r} is not valid; {allowed}")
    if isinstance(value, str):
        m = _NM.match(value)
        if m:
            n, mm = int(m.group(1)), int(m.group(2))
            if not 0 < n < mm:
                raise ValueError(f"sparsity {value!r} is not valid: need 0 < N < M; {allowed}")
            return Sparsity(ratio=n / mm, n=n, m=mm)
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"sparsity {value!r} is not valid; {allowed}") from None
    ratio = float(value)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"sparsity {value!r} is out of range; {allowed}")
    return Sparsity(ratio=ratio)


class CalibrationSpec(_Strict):
    """Where calibration windows come from and how many."""

    dataset: str = Field(
        "wikitext2",
        description='"wikitext2", "c4", a local .txt/.jsonl file (local runs) or "upload:<id>"',
    )
    nsamples: int = Field(128, ge=1, le=4096)
    seqlen: int = Field(2048, ge=8, le=32768)
    seed: int = 0


class EvalSpec(_Strict):
    """Perplexity evaluation, standard protocol (non-overlapping windows)."""

    dataset: str = "wikitext2"
    seqlen: int = Field(2048, ge=8, le=32768)
    max_windows: int | None = Field(None, ge=1)


class MethodOptions(_Strict):
    """Per-method knobs; defaults follow the papers' reference code."""

    magnitude_scope: Literal["matrix", "row"] = "matrix"
    blocksize: int = Field(128, ge=1, description="SparseGPT column block size")
    percdamp: float = Field(0.01, gt=0, le=10, description="SparseGPT damping, x mean(diag H)")


class PruneSpec(_Strict):
    """What to prune and how. The same fields in JSON, on the CLI and in the client."""

    model: str = Field(..., min_length=1, description="hub id org/name, or a local model name")
    revision: str | None = None
    method: str = Field(..., description="magnitude | wanda | sparsegpt")
    sparsity: float | str = Field(..., description='fraction in (0, 1), or "N:M" such as "2:4"')
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    evaluation: EvalSpec | None = None
    options: MethodOptions = Field(default_factory=MethodOptions)
    skip: list[str] = Field(
        default_factory=list,
        description="extra module name patterns (fnmatch) to keep dense, e.g. '*.mlp.down_proj'",
    )
    device: str = "auto"
    dtype: str = "auto"

    @field_validator("method", "device", "dtype")
    @classmethod
    def _one_of(cls, v: str, info) -> str:
        allowed = {"method": METHODS, "device": DEVICES, "dtype": DTYPES}[info.field_name]
        if v not in allowed:
            raise ValueError(f"unknown {info.field_name} {v!r}; allowed: {', '.join(allowed)}")
        return v

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v: float | str) -> float | str:
        parsed = parse_sparsity(v)
        return str(parsed) if parsed.is_nm else parsed.ratio

    @property
    def parsed_sparsity(self) -> Sparsity:
        return parse_sparsity(self.sparsity)


class JobCreate(PruneSpec):
    """Body of POST /v1/jobs: a PruneSpec."""


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


class JobError(BaseModel):
    type: str
    message: str


class ModuleReport(BaseModel):
    """One pruned Linear: achieved sparsity, N:M check, reconstruction error."""

    name: str
    shape: tuple[int, int]
    sparsity: float
    nm_ok: bool | None = None
    rel_error: float | None = None
    damping: float | None = None


class Perplexity(BaseModel):
    dataset: str
    seqlen: int
    windows: int
    dense: float | None = None
    pruned: float | None = None


class PruneReport(BaseModel):
    """Everything pruning_report.json holds."""

    spec: PruneSpec
    versions: dict[str, str] = Field(default_factory=dict)
    architecture: str = ""
    device: str = "cpu"
    dtype: str = ""
    n_layers: int = 0
    sparsity: float = 0.0  # over the pruned modules
    # over every weight matrix in the decoder layers (experts and routers included)
    decoder_sparsity: float | None = None
    nm_ok: bool | None = None
    modules: list[ModuleReport] = Field(default_factory=list)
    stages_s: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    perplexity: Perplexity | None = None
    warnings: list[str] = Field(default_factory=list)

    def summary(self) -> ReportSummary:
        ppl = self.perplexity
        return ReportSummary(
            sparsity=self.sparsity,
            nm_ok=self.nm_ok,
            perplexity_dense=ppl.dense if ppl else None,
            perplexity_pruned=ppl.pruned if ppl else None,
            stages_s=self.stages_s,
            total_s=round(sum(self.stages_s.values()), 3),
            peak_rss_mb=self.peak_rss_mb,
            peak_cuda_mb=self.peak_cuda_mb,
            warnings=self.warnings,
        )


class ReportSummary(BaseModel):
    """The part of the report a job shows when done."""

    sparsity: float
    nm_ok: bool | None = None
    perplexity_dense: float | None = None
    perplexity_pruned: float | None = None
    stages_s: dict[str, float] = Field(default_factory=dict)
    total_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    warnings: list[str] = Field(default_factory=list)


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
