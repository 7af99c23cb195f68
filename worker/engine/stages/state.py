"""What the stages share: where a run reads and writes, the run's state, a stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from service.schemas import (
    PruneReport,
    PruneSpec,
)
from worker.engine.errors import SpecError
from worker.engine.methods import get_method
from worker.engine.model.hf_types import HFModel
from worker.engine.progress import Reporter
from worker.engine.prune.mask_state import MaskState
from worker.engine.prune.masks import Pattern
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walk_resume import WalkCheckpoints, WalkState


@dataclass
class Where:
    """Where a run reads and writes (the service pins these; local runs take defaults)."""

    output: Path
    data_dir: Path | None = None
    upload_dir: Path | None = None
    models_dir: Path | None = None  # the service's MODELS_DIR; None for local runs
    cache_dir: Path | None = None
    allow_local: bool = True  # a model name may be any local directory (never in the service)
    tasks_dir: Path | None = None  # the service's TASKS_DIR: local lm-eval task directories


T = TypeVar("T")


@dataclass
class Run:
    """What the stages share."""

    spec: PruneSpec
    where: Where
    reporter: Reporter
    device: torch.device
    report: PruneReport
    masks: MaskState = field(default_factory=MaskState)
    sources: dict[str, Path | list[str]] = field(default_factory=dict)
    source: Path | None = None  # the model's directory (the card reads its license)
    model: HFModel = None  # set by load
    tokenizer: HFModel = None
    streamer: LayerStreamer = field(init=False)  # set by load
    targets: list[dict] = field(default_factory=list)
    ids: torch.Tensor | None = None
    eval_ids: torch.Tensor | None = None
    heldout_ids: torch.Tensor | None = None  # the held-out part of a user's training corpus
    checkpointing: dict[str, bool] = field(default_factory=dict)  # per training stage
    heldout_labels: torch.Tensor | None = None  # its scored tokens (records: the answers)
    dense: HFModel = None  # a copy of the model before pruning (teacher, SMP's frozen weights)
    teacher: HFModel = None  # `spec.teacher`, when one is named
    scores: dict = field(default_factory=dict)  # learned-mask methods: initial scores by name
    results: list = field(default_factory=list)  # what pruning measured per module
    layer_sparsity: list = field(default_factory=list)  # OWL: what each layer was given
    last_changed: str = "prune"  # the last stage that changed weights (for perplexity)
    checks: dict = field(default_factory=dict)  # lazy mode: mask checks, as layers are written
    counts: tuple[int, int] = (0, 0)  # lazy mode: (weights, zeros) of the decoder's matrices
    walk_checkpoints: WalkCheckpoints = field(init=False)  # set by load
    resume: WalkState | None = None  # the walk's saved state, when a killed job restarts

    @property
    def modules(self) -> dict:
        """Every pruned module by full name, in pruning order."""
        return {n: m for per_layer in self.targets for n, m in per_layer.items()}

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)
        self.reporter.warn(message)

    @property
    def n_layers(self) -> int:
        return len(self.streamer.layers) if self.streamer else 0


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[Run], None]
    weight: float  # share of the job's overall percent, relative to the other stages
    steps: Callable[[Run], int] = lambda r: 0  # units of progress (layers for prune)


def matrix_shape(w: torch.Tensor) -> tuple[int, int]:
    """(out, in) of a weight, as the mask state records it."""
    rows, cols = w.shape
    return int(rows), int(cols)


def given(value: T | None, what: str) -> T:
    """A part of the spec (or of the run) that a stage runs for: the plan adds the stage only
    when it is there."""
    if value is None:
        raise SpecError(f"{what} is not set, but a stage that needs it is in the plan")
    return value


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' was asked for but CUDA is not available; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def pattern_of(spec: PruneSpec) -> Pattern:
    return spec.parsed_sparsity


def run_key(spec: PruneSpec) -> str:
    """Ties a training checkpoint to the spec that made it."""
    import hashlib

    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def stats_needed(spec: PruneSpec) -> str | None:
    """The statistics the walk collects: the method's, at least column norms and means when
    OWL or DSnoT read them or reconstruction needs the calibration activations."""
    needs = get_method(spec.method).stats_for(spec.method_options)
    reads = spec.sparsity_profile != "uniform" or spec.refine != "none"
    if needs is None and (reads or spec.reconstruction is not None):
        return "norms"
    return needs
