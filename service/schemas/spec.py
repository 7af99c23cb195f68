"""The job spec: what to prune and how, and the checks across its parts."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from service.fields import choices, one_of
from service.methods import METHODS, Options, one_shot_methods, options_schema, validate_options
from service.reconstruction import ReconstructionSpec
from service.schemas.common import (
    DEVICES,
    DTYPES,
    MAX_NAME,
    MAX_PATH,
    MAX_SKIP,
    REVISION_ALLOWED,
    SPARSITY_SCHEMA,
    _Strict,
    check_revision,
)
from service.schemas.parts import CalibrationSpec, DSnoTSpec, EvalSpec, OWLSpec, TeacherSpec
from service.schemas.training import TrainingSpec
from service.sparsity import Pattern, parse_sparsity

SPARSITY_PROFILES = ("uniform", "owl")
REFINERS = ("none", "dsnot")
LOADS = ("auto", "eager", "lazy")  # how the model is held: whole, or a layer at a time


class PruneSpec(_Strict):
    """What to prune and how. The same fields in JSON, on the CLI and in the client."""

    model: str = Field(
        ..., min_length=1, max_length=MAX_PATH, description="hub id org/name, or a local model name"
    )
    revision: str | None = Field(
        None, min_length=1, max_length=MAX_NAME, description=REVISION_ALLOWED
    )
    method: str = Field(..., description="a registered method, e.g. magnitude | wanda | sparsegpt")
    sparsity: float | str = Field(
        ...,
        description='fraction in (0, 1), or "N:M" such as "2:4" (M one of 2, 4, 8, 16, 32)',
        json_schema_extra=SPARSITY_SCHEMA,
    )
    calibration: CalibrationSpec = Field(
        default_factory=CalibrationSpec, description="the calibration windows"
    )
    evaluation: EvalSpec | None = Field(
        None, description="perplexity, sample generations and task accuracy, dense and pruned"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, json_schema_extra=options_schema
    )
    skip: list[Annotated[str, Field(min_length=1, max_length=MAX_NAME)]] = Field(
        default_factory=list,
        max_length=MAX_SKIP,
        description="extra module name patterns (fnmatch) to keep dense, e.g. '*.mlp.down_proj'",
    )
    device: str = Field(
        "auto", description="where the engine runs", json_schema_extra=one_of(DEVICES)
    )
    dtype: str = Field(
        "auto", description="weights' dtype while pruning", json_schema_extra=one_of(DTYPES)
    )
    training: TrainingSpec | None = Field(
        None,
        description="the method's own training (a method that learns, e.g. smp, always "
        f"trains: {TrainingSpec.model_fields['steps'].default} steps unless told)",
    )
    recovery: TrainingSpec | None = Field(
        None, description="after pruning: masks fixed, kept weights trained with distillation"
    )
    teacher: TeacherSpec | None = Field(
        None,
        description="the teacher of every training stage that distils (default: the "
        "model before pruning)",
    )
    sparsity_profile: str = Field(
        "uniform",
        description="uniform: every layer at `sparsity`; owl: each layer its own, from its "
        "outlier ratio, with the mean at `sparsity` (unstructured only)",
        json_schema_extra=one_of(SPARSITY_PROFILES),
    )
    owl: OWLSpec | None = Field(None, description="OWL's knobs (sparsity_profile 'owl')")
    refine: str = Field(
        "none",
        description="dsnot: after pruning, swap pruned and kept weights per row (per group for "
        "N:M) where that lowers the expected output error; no training",
        json_schema_extra=one_of(REFINERS),
    )
    dsnot: DSnoTSpec | None = Field(None, description="DSnoT's knobs (refine 'dsnot')")
    reconstruction: ReconstructionSpec | None = Field(
        None, description="block-wise reconstruction inside the walk (EBFT); null: off"
    )
    checkpoint_layers: int = Field(
        0,
        ge=0,
        le=100_000,
        description="save the walk's state every this many layers so a restarted job resumes "
        "there; 0: after any layer once 5 s passed since the last save",
    )
    load: str = Field(
        "auto",
        description="eager: the whole model in memory; lazy: one decoder layer at a time from "
        "the checkpoint, each pruned layer written at once (no training stages); auto: lazy "
        "when the weights exceed half the available memory",
        json_schema_extra=one_of(LOADS),
    )

    @field_validator("method", "device", "dtype", "sparsity_profile", "refine", "load")
    @classmethod
    def _one_of(cls, v: str, info: ValidationInfo) -> str:
        name = info.field_name or ""
        allowed = tuple(METHODS) if name == "method" else choices(cls.model_fields[name])
        if v not in allowed:
            raise ValueError(f"unknown {info.field_name} {v!r}; allowed: {', '.join(allowed)}")
        return v

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Validated against the method's own options model; stored with its defaults."""
        method = info.data.get("method")
        if method is None:  # the method itself is wrong: that error is reported
            return v
        return validate_options(method, v).model_dump()

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        return None if v is None else check_revision(v)

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v: float | str) -> float | str:
        parsed = parse_sparsity(v)
        return str(parsed) if parsed.is_nm else parsed.ratio

    @model_validator(mode="after")
    def _training_fits_method(self) -> PruneSpec:
        trains = METHODS[self.method].TRAINS
        if trains and self.training is None:
            self.training = TrainingSpec()
        if (
            self.training is not None
            and not self.method_options.distills_by_default()
            and "distill" not in self.training.model_fields_set
        ):
            # its objective is the LM loss, with distillation when asked (a copy: the
            # caller's TrainingSpec may be shared)
            self.training = self.training.model_copy(update={"distill": False})
        if not trains and self.training is not None:
            learners = ", ".join(n for n, m in METHODS.items() if m.TRAINS)
            raise ValueError(
                f"training: method {self.method!r} does not train; training is for {learners} "
                "(for fine-tuning after pruning use recovery)"
            )
        self._check_schedule()
        return self

    @model_validator(mode="after")
    def _recovery_and_teacher(self) -> PruneSpec:
        options = METHODS[self.method]
        if options.RECOVERS and self.recovery is None:
            raise ValueError(
                f"recovery: method {self.method!r} fine-tunes with the input's own zeros fixed; "
                "give recovery (CLI: --recover-steps N --train-data FILE)"
            )
        stages = [
            (f, ts)
            for f, ts in (("training", self.training), ("recovery", self.recovery))
            if ts is not None
        ]
        if self.teacher is not None:
            if not any(ts.distill for _, ts in stages):
                raise ValueError(
                    "teacher: no training stage distils (there is none, or its "
                    "distill is off); drop teacher or set distill"
                )
            return self
        for field, ts in stages if options.SELF_TEACHER else ():
            if "distill" not in ts.model_fields_set:  # a copy: the caller's may be shared
                setattr(self, field, ts.model_copy(update={"distill": False}))
            elif ts.distill:
                asked = f"objective {ts.objective!r} distils" if ts.objective else "distill"
                raise ValueError(
                    f"{field}.{asked}: with method {self.method!r} the model before pruning is "
                    "the input itself (KL = 0, nothing learned); name a teacher (teacher.model) "
                    "or leave distill off for the LM loss"
                )
        return self

    def _check_schedule(self) -> None:
        options = self.method_options
        options.check_sparsity(self.parsed_sparsity.is_nm, str(self.sparsity))
        scheduled = options.prunes_on_schedule()
        which = ", ".join(m.SCHEDULE_NOTE for m in METHODS.values() if m.SCHEDULE_NOTE)
        if self.recovery is not None and self.recovery.schedules():
            raise ValueError(
                "recovery: the pruning schedule fields (initial_sparsity, warmup_steps, "
                f"prune_every, cooldown_steps) are for training of {which}; recovery keeps the "
                "mask fixed"
            )
        if self.recovery is not None and self.recovery.lr_rewind:
            raise ValueError(
                "recovery.lr_rewind: learning-rate rewinding happens at pruning steps; recovery "
                "keeps the mask fixed (it is an option of gmp's training)"
            )
        if self.training is None:
            return
        if self.training.lr_rewind and not options.REWINDS_LR:
            which = ", ".join(n for n, m in METHODS.items() if m.REWINDS_LR)
            raise ValueError(
                f"training.lr_rewind: learning-rate rewinding is for {which}, whose pruning "
                f"steps it rewinds at, not {self.method!r}"
            )
        if (self.training.processes or 1) > 1 or self.training.offload != "none":
            raise ValueError(
                "training.processes, training.offload: FSDP ranks and CPU offload train "
                f"recovery only; {self.method}'s own training runs in one process (set "
                "recovery.processes or recovery.offload)"
            )
        if not scheduled and self.training.schedules():
            raise ValueError(
                f"training: the pruning schedule fields are for {which}, not {self.method!r}"
            )
        if scheduled:
            self.training.schedule_steps(options.prune_every())
            target = self.parsed_sparsity.ratio
            if self.training.initial_sparsity >= target:
                raise ValueError(
                    f"training.initial_sparsity: {self.training.initial_sparsity:g} must be "
                    f"below the target sparsity {target:g}"
                )

    @model_validator(mode="after")
    def _profile_and_refine(self) -> PruneSpec:
        for field, value, knobs, on in (
            ("sparsity_profile", self.sparsity_profile, "owl", "owl"),
            ("refine", self.refine, "dsnot", "dsnot"),
        ):
            if value != on:
                if getattr(self, knobs) is not None:
                    raise ValueError(
                        f"{knobs}: these settings are for {field} {on!r}, but "
                        f"{field} is {value!r}; set {field} to {on!r} or drop "
                        f"{knobs}"
                    )
                continue
            if not METHODS[self.method].ONE_SHOT:
                methods = ", ".join(one_shot_methods())
                raise ValueError(
                    f"{field}: {on!r} works with the one-shot methods {methods}, "
                    f"not {self.method!r}"
                )
        if self.sparsity_profile == "owl":
            self.owl = self.owl or OWLSpec()
            self._owl_samples_fit(self.owl)
            s, lam = self.parsed_sparsity, self.owl.lam
            if s.is_nm:
                raise ValueError(
                    f"sparsity_profile: 'owl' gives each layer its own fraction and needs an "
                    f"unstructured sparsity such as 0.7; N:M ({s}) stays uniform"
                )
            if s.ratio - lam <= 0 or s.ratio + lam >= 1:
                raise ValueError(
                    f"owl.lam: layer sparsities {s.ratio:g} +/- {lam:g} must stay inside (0, 1); "
                    f"choose lam < {min(s.ratio, 1 - s.ratio):g}"
                )
        if self.refine == "dsnot":
            self.dsnot = self.dsnot or DSnoTSpec()
        return self

    @model_validator(mode="after")
    def _reconstruction_fits(self) -> PruneSpec:
        rc = self.reconstruction
        if rc is None:
            return self
        if not METHODS[self.method].ONE_SHOT:
            methods = ", ".join(one_shot_methods())
            raise ValueError(
                f"reconstruction: works with the one-shot methods {methods}, not {self.method!r}"
            )
        if rc.batch_size > self.calibration.nsamples:
            raise ValueError(
                f"reconstruction.batch_size: {rc.batch_size} is more than calibration.nsamples "
                f"({self.calibration.nsamples}); allowed: 1 to {self.calibration.nsamples}"
            )
        return self

    def _owl_samples_fit(self, owl: OWLSpec) -> None:
        """An owl.samples that was given must not exceed the windows calibration reads (the
        default, 4, is simply capped there)."""
        samples, nsamples = owl.samples, self.calibration.nsamples
        if "samples" in owl.model_fields_set and samples > nsamples:
            raise ValueError(
                f"owl.samples: {samples} is more than calibration.nsamples ({nsamples}); the "
                f"survey reads the first owl.samples calibration windows, so allowed: 1 to "
                f"{nsamples} (or raise calibration.nsamples)"
            )

    @model_validator(mode="after")
    def _lazy_has_no_tasks(self) -> PruneSpec:
        if self.load == "lazy" and self.evaluation is not None and self.evaluation.tasks:
            raise ValueError(
                "load: 'lazy' holds one decoder layer at a time, but evaluation.tasks runs the "
                "whole model; use load 'eager' or 'auto' (auto loads eagerly for tasks)"
            )
        return self

    @model_validator(mode="after")
    def _lazy_has_no_training(self) -> PruneSpec:
        if self.load == "lazy" and (self.training is not None or self.recovery is not None):
            stage = "training" if self.training is not None else "recovery"
            raise ValueError(
                f"load: 'lazy' holds one decoder layer at a time, but {stage} trains the whole "
                "model at once; use load 'eager' or 'auto' (auto loads eagerly for training)"
            )
        return self

    @property
    def calibrates(self) -> bool:
        """Whether the job reads calibration data (its method, OWL, DSnoT or reconstruction
        need it)."""
        return (
            self.method_options.calibrates()
            or self.sparsity_profile != "uniform"
            or self.refine != "none"
            or self.reconstruction is not None
        )

    @property
    def parsed_sparsity(self) -> Pattern:
        return parse_sparsity(self.sparsity)

    @property
    def method_options(self) -> Options:
        """`options` as the method's own typed model."""
        return METHODS[self.method].model_validate(self.options)
