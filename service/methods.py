"""The methods the API offers: one options model per method, registered under the method's name.

The one list of allowed methods is `METHODS`, filled by `@method_options(...)`; the engine's
registry (worker/engine/methods) must hold the same names. Pure pydantic, no torch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

METHODS: dict[str, type[Options]] = {}  # name -> its options model, in registration order


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
        """Whether the method reads calibration data (known without the engine or torch)."""
        return True

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


def method_options(name: str):
    """Class decorator: register `cls` as the options of method `name`."""

    def register(cls: type[Options]) -> type[Options]:
        METHODS[name] = cls
        return cls

    return register


@method_options("magnitude")
class MagnitudeOptions(Options):
    """Magnitude pruning: score |W|."""

    ONE_SHOT: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"

    magnitude_scope: Literal["matrix", "row"] = Field(
        "matrix", description="one threshold per matrix (the reference) or per output row"
    )

    def calibrates(self) -> bool:
        return False


@method_options("wanda")
class WandaOptions(Options):
    """Wanda: score |W| * ||X_j||, lowest per output row; no options."""

    ONE_SHOT: ClassVar[bool] = True


@method_options("sparsegpt")
class SparseGPTOptions(Options):
    """SparseGPT: column-wise pruning with inverse-Hessian weight updates."""

    STATISTICS: ClassVar[str] = "hessians"
    ONE_SHOT: ClassVar[bool] = True

    blocksize: int = Field(128, ge=1, le=65536, description="SparseGPT column block size")
    percdamp: float = Field(
        0.01, gt=0, le=10, description="SparseGPT damping, as a multiple of mean(diag H)"
    )


@method_options("smp")
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

    def calibrates(self) -> bool:
        return self.smp_init == "oneshot" and METHODS[self.init_method]().calibrates()

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


class PrunesWhileTraining(Options):
    """Options of a method with no one-shot walk: it prunes on the cubic schedule of
    `training`, reading no calibration data."""

    TRAINS: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"

    def calibrates(self) -> bool:
        return False

    def walks(self) -> bool:
        return False

    def prunes_on_schedule(self) -> bool:
        return True


@method_options("movement")
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


@method_options("gmp")
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


@method_options("pattern_lock")
class PatternLockOptions(Options):
    """Pattern lock (Prune Once for All's transfer step): the mask is the input checkpoint's
    own zeros in every Linear that would be pruned, then `recovery` fine-tunes the kept
    weights on the user's data with that mask fixed; `sparsity` is the pattern the zeros
    are checked against (N:M: the report's nm_ok). Teacher: `teacher`, else the LM loss."""

    RECOVERS: ClassVar[bool] = True
    SELF_TEACHER: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"

    def calibrates(self) -> bool:
        return False


def one_shot_methods() -> list[str]:
    """The methods OWL, DSnoT and reconstruction work with."""
    return [name for name, model in METHODS.items() if model.ONE_SHOT]


def _legacy_defaults() -> dict[str, Any]:
    """Options of every method at their defaults: the old flat `options` object sent all of
    them whatever the method, so a key of another method left at its default is ignored."""
    out: dict[str, Any] = {}
    for model in METHODS.values():
        for key, field in model.model_fields.items():
            out.setdefault(key, field.default)
    return out


def validate_options(method: str, raw: dict[str, Any]) -> Options:
    """The options of `method` from `raw`; ValueError naming an option the method lacks."""
    model = METHODS[method]
    legacy = _legacy_defaults()
    own: dict[str, Any] = {}
    for key, value in raw.items():
        if key in model.model_fields:
            own[key] = value
        elif key in legacy and value == legacy[key]:
            continue  # the old flat bag: another method's option at its default
        else:
            mine = ", ".join(model.model_fields) or "none"
            raise ValueError(f"method {method!r} has no option {key!r}; its options: {mine}")
    try:
        return model.model_validate(own)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


def options_schema(schema: dict[str, Any]) -> None:
    """JSON schema of `options`: any registered method's options (called when the schema is
    generated, so methods registered later appear too)."""
    schema.pop("additionalProperties", None)
    schema["anyOf"] = [
        {**m.model_json_schema(), "title": f"{name} options"} for name, m in METHODS.items()
    ]
    schema["description"] = "options of the chosen method; see each method's options"
