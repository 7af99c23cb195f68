"""What pruning_report.json holds, and the summary a finished job shows."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.reconstruction import BlockReport
from service.schemas.spec import PruneSpec


class ModuleReport(BaseModel):
    """One pruned Linear: achieved sparsity, N:M check, reconstruction error."""

    name: str
    shape: tuple[int, int]
    sparsity: float
    nm_ok: bool | None = None
    rel_error: float | None = None
    damping: float | None = None
    dsnot_swaps: int | None = Field(None, description="DSnoT: weights regrown (as many pruned)")


class LayerReport(BaseModel):
    """One decoder layer under a sparsity profile (OWL): what it was given and why."""

    index: int
    outlier_ratio: float  # share of its Wanda scores above owl.m x their mean
    sparsity: float  # the sparsity OWL gave it
    achieved: float  # what its masks prune (per-row rounding)
    params: int  # weights of its pruned modules


class Perplexity(BaseModel):
    dataset: str
    seqlen: int
    windows: int
    dense: float | None = None
    pruned: float | None = None  # after the last stage
    after: dict[str, float] = Field(
        default_factory=dict, description="after each stage that changed weights"
    )


class Samples(BaseModel):
    """Greedy continuations of the same prompts, by stage ("dense", "prune", "train", ...)."""

    prompts: list[str]
    tokens: int
    after: dict[str, list[str]] = Field(default_factory=dict, description="one per prompt")


class TaskResult(BaseModel):
    """One task's accuracy (lm-evaluation-harness, zero-shot), dense and pruned: its metrics
    (e.g. acc, acc_norm) with their standard errors (acc_stderr, ...)."""

    task: str
    source: str  # "local task directory <name>" or "lm-evaluation-harness"
    samples: int = 0  # examples scored (task_limit bounds it)
    dense: dict[str, float] = Field(default_factory=dict)
    pruned: dict[str, float] = Field(default_factory=dict)


class TrainingReport(BaseModel):
    """What one run of the training engine did."""

    stage: str  # "train" (the method's own) or "recover"
    dataset: str
    split: str  # which file or split the windows came from
    steps: int
    seqlen: int
    batch_size: int
    tokens: int = 0
    trainable: str = ""  # what trained, e.g. "mask scores (weights frozen)"
    trainable_params: int = 0
    objective: str = ""
    teacher: str | None = None  # e.g. "dense copy, float32, cpu"
    lr: float = 0.0
    loss: list[float] = Field(default_factory=list, description="per step")
    time_per_step_s: float = 0.0  # median
    resumed_from_step: int = 0
    precision: str = "fp32"  # what ran: "bf16" (autocast, fp32 master weights) or "fp32"
    gradient_checkpointing: bool = False  # whether it ran


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
    layers: list[LayerReport] = Field(
        default_factory=list, description="per decoder layer (sparsity_profile 'owl')"
    )
    load: str = Field("", description="how the model was held: eager or lazy (and why)")
    resumed_at_layer: int | None = Field(
        None, description="a restarted job: the layer its walk went on from"
    )
    stages_s: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    perplexity: Perplexity | None = None
    heldout: Perplexity | None = Field(
        None, description="perplexity on the held-out part of a user's training data"
    )
    training: list[TrainingReport] = Field(default_factory=list)
    reconstruction: list[BlockReport] = Field(
        default_factory=list, description="block-wise reconstruction, per decoder layer"
    )
    samples: Samples | None = None
    tasks: list[TaskResult] = Field(
        default_factory=list, description="task accuracy (evaluation.tasks), dense and pruned"
    )
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
            load=self.load,
            resumed_at_layer=self.resumed_at_layer,
            tasks={
                t.task: {"dense": t.dense.get("acc"), "pruned": t.pruned.get("acc")}
                for t in self.tasks
            },
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
    load: str = ""
    resumed_at_layer: int | None = None
    tasks: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="accuracy (acc) per task: dense and pruned"
    )
    warnings: list[str] = Field(default_factory=list)
