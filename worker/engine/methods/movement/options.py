"""Movement's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from worker.engine.methods.options import PrunesWhileTraining


class MovementOptions(PrunesWhileTraining):
    """Movement pruning (Sanh et al., 2020): weights and scores train together; the scores
    accumulate S = -score_lr * sum_t W * dL/dW through a straight-through top-v mask whose v
    follows the cubic schedule of `training` (hard), or keep sigmoid(S) >= tau (soft)."""

    TRAINED: ClassVar[tuple[str, ...]] = ("weights", "scores")

    movement_soft: bool = Field(
        False,
        description="soft movement: one score threshold shared by every matrix, so each "
        "matrix's sparsity is what its scores give (unstructured only)",
    )
    movement_threshold: Literal["schedule", "fixed"] = Field(
        "schedule",
        description="soft movement: 'schedule' sets the shared threshold every step so that "
        "the schedule's sparsity holds over all pruned matrices together (ends at `sparsity`); "
        "'fixed' is the paper's: keep sigmoid(S) > tau, tau ramped from 0 to movement_tau, the "
        "sparsity is then what movement_lambda gives (reported)",
    )
    movement_tau: float = Field(
        0.5, gt=0, lt=1, description="soft movement, fixed threshold: the final tau on sigmoid(S)"
    )
    movement_lambda: float = Field(
        0.0,
        ge=0,
        le=1e12,
        description="soft movement: weight of the paper's regulariser lambda * mean sigmoid(S) "
        "of each matrix, ramped with the schedule (0: off; it pushes every score of a small "
        "matrix down harder than a large one's, so it moves sparsity to the small matrices)",
    )
    scope: Literal["matrix", "row"] = Field(
        "matrix",
        description="hard movement, unstructured sparsity: select the lowest scores over the "
        "whole matrix (as the paper's code does) or per row; N:M selects per group either way",
    )
    score_lr: float = Field(
        1.0,
        gt=0,
        le=1e12,
        description="alpha_S: S = -alpha_S * sum_t W * dL/dW (plain "
        "accumulation; hard movement is invariant to it)",
    )

    SCHEDULE_NOTE: ClassVar[str] = "movement"

    def prune_every(self) -> int | None:
        return 1  # the paper updates the top-v mask at every step

    def distills_by_default(self) -> bool:
        return False  # the paper's objective is the LM loss; distillation when asked

    def check_sparsity(self, is_nm: bool, sparsity: str) -> None:
        if is_nm and self.movement_soft:
            raise ValueError(
                f"options.movement_soft: soft movement gives each matrix its own sparsity and "
                f"cannot hold an N:M pattern ({sparsity}); use hard movement for N:M"
            )


OPTIONS = MovementOptions
