"""SMP's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from worker.engine.methods.options import Options
from worker.engine.methods.registry import METHODS


class SMPOptions(Options):
    """Static Model Pruning: weights frozen, the mask learned from first-order scores."""

    TRAINS: ClassVar[bool] = True
    TRAINED: ClassVar[tuple[str, ...]] = ("scores",)
    init_method: Literal["wanda", "sparsegpt", "magnitude"] = Field(
        "wanda", description="one-shot method whose mask the learned scores start from"
    )
    scope: Literal["matrix", "row"] = Field(
        "matrix",
        description="unstructured sparsity: select the lowest scores over the whole matrix "
        "(as the paper's code does) or per row; N:M selects per group either way",
    )

    smp_init: Literal["oneshot", "zero"] = Field(
        "oneshot",
        description="'oneshot': scores start from init_method's mask at the target sparsity; "
        "'zero': scores start at 0 from the dense model and the sparsity follows the cubic "
        "schedule of `training` (the paper's; no one-shot walk)",
    )
    smp_variant: Literal["L", "S"] = Field(
        "L",
        description="SMP-L: every matrix at the same sparsity; SMP-S: each matrix's keep "
        "fraction from its scores, mean sigmoid(S/smp_p) against the same kind of matrix in the "
        "other layers (unstructured only)",
    )
    smp_p: float = Field(1.0, gt=0, le=1e6, description="SMP-S: p in sigmoid(S/p)")
    smp_lambda: float = Field(
        0.0,
        ge=0,
        le=1e12,
        description="weight of the regulariser lambda * mean over matrices of mean sigmoid(S), "
        "ramped with the schedule (0: off)",
    )

    SCHEDULE_NOTE: ClassVar[str] = "smp with smp_init 'zero'"

    def walks(self) -> bool:
        return self.smp_init == "oneshot"

    def prunes_on_schedule(self) -> bool:
        return self.smp_init == "zero"

    def check_sparsity(self, is_nm: bool, sparsity: str) -> None:
        if is_nm and self.smp_variant == "S":
            raise ValueError(
                f"options.smp_variant: SMP-S gives each matrix its own sparsity and cannot hold "
                f"an N:M pattern ({sparsity}); use smp_variant 'L' for N:M"
            )

    def statistics(self) -> str:
        return METHODS[self.init_method]().statistics() if self.walks() else "none"


OPTIONS = SMPOptions
