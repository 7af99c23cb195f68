"""The methods the API offers: one options model per method, registered under the method's name.

The one list of allowed methods is `METHODS`, filled by `@method_options(...)`; the engine's
registry (worker/engine/methods) must hold the same names. Pure pydantic, no torch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

METHODS: dict[str, type[BaseModel]] = {}  # name -> its options model, in registration order


class Options(BaseModel):
    """Base of every method's options: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    TRAINS: ClassVar[bool] = False  # the method runs the training engine (needs `training`)
    RECOVERS: ClassVar[bool] = False  # the method is a mask for `recovery` (which it needs)
    # the model before pruning is the input itself, so it cannot teach: without a `teacher`
    # the training stages use the LM loss
    SELF_TEACHER: ClassVar[bool] = False

    def calibrates(self) -> bool:
        """Whether the method reads calibration data (known without the engine or torch)."""
        return True


def method_options(name: str):
    """Class decorator: register `cls` as the options of method `name`."""

    def register(cls: type[Options]) -> type[Options]:
        METHODS[name] = cls
        return cls

    return register


@method_options("magnitude")
class MagnitudeOptions(Options):
    """Magnitude pruning: score |W|."""

    magnitude_scope: Literal["matrix", "row"] = Field(
        "matrix", description="one threshold per matrix (the reference) or per output row"
    )

    def calibrates(self) -> bool:
        return False


@method_options("wanda")
class WandaOptions(Options):
    """Wanda: score |W| * ||X_j||, lowest per output row; no options."""


@method_options("sparsegpt")
class SparseGPTOptions(Options):
    """SparseGPT: column-wise pruning with inverse-Hessian weight updates."""

    blocksize: int = Field(128, ge=1, le=65536, description="SparseGPT column block size")
    percdamp: float = Field(
        0.01, gt=0, le=10, description="SparseGPT damping, as a multiple of mean(diag H)"
    )


@method_options("smp")
class SMPOptions(Options):
    """Static Model Pruning: weights frozen, the mask learned from first-order scores."""

    TRAINS: ClassVar[bool] = True
    init_method: Literal["wanda", "sparsegpt", "magnitude"] = Field(
        "wanda", description="one-shot method whose mask the learned scores start from"
    )

    def calibrates(self) -> bool:
        return METHODS[self.init_method]().calibrates()


@method_options("movement")
class MovementOptions(Options):
    """Movement pruning (Sanh et al., 2020): weights and scores train together; the scores
    accumulate S = -score_lr * sum_t W * dL/dW through a straight-through top-v mask whose v
    follows the cubic schedule of `training` (hard), or keep sigmoid(S) >= tau (soft)."""

    TRAINS: ClassVar[bool] = True
    movement_soft: bool = Field(
        False, description="soft movement: keep sigmoid(S) >= movement_tau; the sparsity is "
        "then what the scores and movement_lambda give (reported), not `sparsity`"
    )  # fmt: skip
    movement_tau: float = Field(
        0.5, gt=0, lt=1, description="soft movement: threshold on sigmoid(S)"
    )
    movement_lambda: float = Field(
        1.0, ge=0, le=1e12, description="soft movement: weight of the penalty sum sigmoid(S)"
    )
    score_lr: float = Field(
        1.0, gt=0, le=1e12, description="alpha_S: S = -alpha_S * sum_t W * dL/dW (plain "
        "accumulation; hard movement is invariant to it)"
    )  # fmt: skip

    def calibrates(self) -> bool:
        return False


@method_options("gmp")
class GMPOptions(Options):
    """Gradual magnitude pruning (Zhu & Gupta, 2017) as Prune Once for All uses it: weights
    train with distillation; every `training.prune_every` steps the lowest |W| are pruned,
    up to `sparsity` on the cubic schedule of `training`."""

    TRAINS: ClassVar[bool] = True

    def calibrates(self) -> bool:
        return False


@method_options("pattern_lock")
class PatternLockOptions(Options):
    """Pattern lock (Prune Once for All's transfer step): the mask is the input checkpoint's
    own zeros in every Linear that would be pruned, then `recovery` fine-tunes the kept
    weights on the user's data with that mask fixed; `sparsity` is the pattern the zeros
    are checked against (N:M: the report's nm_ok). Teacher: `teacher`, else the LM loss."""

    RECOVERS: ClassVar[bool] = True
    SELF_TEACHER: ClassVar[bool] = True

    def calibrates(self) -> bool:
        return False


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
