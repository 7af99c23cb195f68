"""The job spec's parts: calibration windows, evaluation, OWL's and DSnoT's knobs, the
teacher."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from service.schemas.common import (
    DEFAULT_PROMPTS,
    MAX_NAME,
    MAX_PATH,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_SAMPLE_TOKENS,
    REVISION_ALLOWED,
    _Strict,
    check_revision,
)


class CalibrationSpec(_Strict):
    """Where calibration windows come from and how many."""

    dataset: str = Field(
        "wikitext2",
        min_length=1,
        max_length=MAX_PATH,
        description='"wikitext2", "c4", a local .txt/.jsonl file (local runs) or "upload:<id>"',
    )
    nsamples: int = Field(128, ge=1, le=4096, description="calibration sequences")
    seqlen: int = Field(2048, ge=8, le=32768, description="calibration tokens per sequence")
    seed: int = Field(0, description="calibration window seed")


TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_TASKS = 16
TASKS_ALLOWED = (
    "a task name (letters, digits, _ . -; <= 100 chars): a local task directory of that name "
    "(shipped, such as pruneserve_facts, or under the server's tasks directory) or an "
    "lm-evaluation-harness task such as arc_easy; local runs may also give a directory path"
)


class EvalSpec(_Strict):
    """Perplexity evaluation, standard protocol (non-overlapping windows); task accuracy with
    lm-evaluation-harness (zero-shot), on the dense and the pruned model alike."""

    dataset: str = Field(
        "wikitext2",
        min_length=1,
        max_length=MAX_PATH,
        description="evaluate perplexity on this dataset, e.g. wikitext2",
    )
    seqlen: int = Field(2048, ge=8, le=32768, description="tokens per evaluation window")
    max_windows: int | None = Field(
        None, ge=1, description="at most this many windows (default: all)"
    )
    prompts: list[Annotated[str, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]] = Field(
        default_factory=lambda: list(DEFAULT_PROMPTS),
        max_length=MAX_PROMPTS,
        description=f"greedy sample generations from the dense model and after each stage that "
        f"changes weights; at most {MAX_PROMPTS} prompts of {MAX_PROMPT_CHARS} characters, "
        "[] for none",
    )
    sample_tokens: int = Field(
        24, ge=1, le=MAX_SAMPLE_TOKENS, description="tokens generated per prompt and stage"
    )
    tasks: list[Annotated[str, Field(min_length=1, max_length=MAX_PATH)]] = Field(
        default_factory=list, max_length=MAX_TASKS, description=TASKS_ALLOWED
    )
    task_limit: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="at most this many examples of each task (default: the whole test split, "
        "as the papers)",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        for name in v:
            if not (TASK_NAME.match(name) or "/" in name):
                raise ValueError(f"task {name[:80]!r} is not valid; allowed: {TASKS_ALLOWED}")
        if len(set(v)) != len(v):
            raise ValueError("tasks: a task is named twice")
        return v


class OWLSpec(_Strict):
    """OWL (Yin et al., ICML 2024): each decoder layer's sparsity from its outlier ratio."""

    m: float = Field(
        5.0, gt=1, le=1000, description="an outlier is a Wanda score above m x its layer's mean"
    )
    lam: float = Field(0.08, ge=0, lt=0.5, description="layer sparsities lie in [s - lam, s + lam]")
    samples: int = Field(
        4,
        ge=1,
        le=4096,
        description="calibration windows of the dense survey that measures "
        "every layer's outlier ratio before the walk (at most calibration.nsamples)",
    )


class DSnoTSpec(_Strict):
    """DSnoT (Zhang et al., ICLR 2024): training-free prune-and-grow swaps per row (per group
    of M for N:M) that lower the row's expected output error; no weight is updated."""

    max_cycles: int = Field(50, ge=1, le=10_000, description="swap rounds per matrix at most")
    update_threshold: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description="a row stops once |E[error of its output]| per token is at most this",
    )
    var_power: float = Field(
        1.0, ge=0, le=4, description="regrow candidates ranked by W*E[x] / Var[x]^var_power"
    )


class TeacherSpec(_Strict):
    """The teacher the training stages distil from (default: the model before pruning)."""

    model: str = Field(
        ...,
        min_length=1,
        max_length=MAX_PATH,
        description="as `model`: a hub id org/name, or a "
        "local model name; it needs the model's vocabulary",
    )
    revision: str | None = Field(
        None, min_length=1, max_length=MAX_NAME, description=REVISION_ALLOWED
    )

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        return None if v is None else check_revision(v)
