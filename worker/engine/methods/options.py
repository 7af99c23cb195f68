"""What every method's options model is: pydantic, no torch, with the method's facts.

Each method declares its options in its own folder (`<name>/options.py`, a subclass of
`Options`); the API validates a job's `options` with it, the OpenAPI schema and the CLI flags
are generated from it, and the planner and the engine's stage plan read its facts
(`walks()`, `prunes_on_schedule()`, `STATISTICS`, ...) instead of branching on names.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """Base of every method's options: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    TRAINS: ClassVar[bool] = False  # the method runs the training engine (needs `training`)
    SCHEDULE_NOTE: ClassVar[str] = ""  # when it prunes on the schedule, for error messages
    TRAINED: ClassVar[tuple[str, ...]] = ()  # what its training updates: weights, scores
    STATISTICS: ClassVar[str] = "norms"  # what the walk accumulates: none, norms or hessians
    RECOVERS: ClassVar[bool] = False  # the method is a mask for `recovery` (which it needs)
    # the model before pruning is the input itself, so it cannot teach: without a `teacher`
    # the training stages use the LM loss
    SELF_TEACHER: ClassVar[bool] = False
    REWINDS_LR: ClassVar[bool] = False  # training.lr_rewind applies (its pruning steps)
    # a one-shot method of the walk, whose layer sparsity may vary: OWL's profile, DSnoT's
    # refinement and block-wise reconstruction work with it
    ONE_SHOT: ClassVar[bool] = False

    def calibrates(self) -> bool:
        """Whether the method reads calibration data (known without the engine or torch): it
        does when its walk accumulates statistics."""
        return self.statistics() != "none"

    def statistics(self) -> str:
        """The walk's statistics for this method (the planner counts their bytes)."""
        return self.STATISTICS

    def walks(self) -> bool:
        """Whether a one-shot walk prunes before any training (False: it prunes only while
        training, on the schedule)."""
        return True

    def prunes_on_schedule(self) -> bool:
        """Whether training follows the cubic sparsity schedule of `training`."""
        return False

    def prune_every(self) -> int | None:
        """The schedule's default steps between pruning steps (None: the ramp / 10)."""
        return None

    def distills_by_default(self) -> bool:
        """Whether the objective is distillation from the dense model unless asked otherwise."""
        return True

    def check_sparsity(self, is_nm: bool, sparsity: str) -> None:
        """Refuse a sparsity these options cannot give (ValueError naming the option)."""


class PrunesWhileTraining(Options):
    """Options of a method with no one-shot walk: it prunes on the cubic schedule of
    `training`, reading no calibration data."""

    TRAINS: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"

    def walks(self) -> bool:
        return False

    def prunes_on_schedule(self) -> bool:
        return True
