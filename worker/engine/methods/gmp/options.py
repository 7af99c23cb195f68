"""Gradual magnitude pruning's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from worker.engine.methods.options import PrunesWhileTraining


class GMPOptions(PrunesWhileTraining):
    """Gradual magnitude pruning (Zhu & Gupta, 2017) as Prune Once for All uses it: weights
    train with distillation; every `training.prune_every` steps the lowest |W| are pruned,
    up to `sparsity` on the cubic schedule of `training`."""

    scope: Literal["matrix", "row"] = Field(
        "matrix",
        description="unstructured sparsity: select the lowest scores over the whole matrix "
        "(as the paper's code does) or per row; N:M selects per group either way",
    )

    SCHEDULE_NOTE: ClassVar[str] = "gmp"
    TRAINED: ClassVar[tuple[str, ...]] = ("weights",)
    REWINDS_LR: ClassVar[bool] = True


OPTIONS = GMPOptions
