"""The wire contract: one set of pydantic models shared by the API, the worker,
the local `pruneserve prune` command and the client. Pure pydantic, no torch.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.config import JsonDict

from service.fields import choices, one_of
from service.methods import METHODS, Options, one_shot_methods, options_schema, validate_options
from service.reconstruction import BlockReport, ReconstructionSpec
from service.sparsity import Pattern, parse_sparsity

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
NAMED_DATASETS = ("wikitext2", "c4")
REPORT_FILE = "pruning_report.json"  # written next to every pruned checkpoint
# What the schema says sparsity may be; the server accepts a subset (0 < N < M, 0 < x < 1).
SPARSITY_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": r"^\s*(?:[0-9]+\s*:\s*0*(?:2|4|8|16|32)|0*\.[0-9]+)\s*$"},
    ]
}
_FIELD_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)?): ")
_LOC_ROOTS = ("body", "query", "path", "header", "form", "file", "cookie")
MAX_NAME = 255  # one path component on common filesystems; model, revision, datasets
MAX_PATH = 4096  # a local dataset file (local runs)
MAX_SKIP = 256
MAX_PROMPTS = 8  # sample generations: prompts per job
MAX_PROMPT_CHARS = 500
MAX_SAMPLE_TOKENS = 128  # greedy tokens per prompt and stage
DEFAULT_PROMPTS = (
    "The capital of France is",
    "Once upon a time, there was a",
    "The most important thing to know about water is",
)
# git check-ref-format: no "..", "@{", "//", control chars, space ~ ^ : ? * [ \ ; no component
# starting with "." or ending with ".lock"; no leading or trailing "/" and no trailing "."
_REF_BAD = re.compile(r"\.\.|@\{|//|[\x00-\x20\x7f~^:?*\[\\]|(^|/)\.|\.lock(/|$)|^/|/$|\.$|^@$")
REVISION_ALLOWED = "a branch or tag name (git ref rules) or a 7-40 hex commit id, <= 255 chars"


def check_revision(revision: str) -> str:
    """`revision` when it is a safe hub revision; ValueError naming what is allowed otherwise.

    Never a path: the hub cache reads refs/<revision> as a file.
    """
    if not revision or len(revision) > MAX_NAME or _REF_BAD.search(revision):
        shown = revision if len(revision) <= 80 else revision[:80] + "..."
        raise ValueError(f"revision {shown!r} is not valid; allowed: {REVISION_ALLOWED}")
    return revision


def partial_dir(output: Path) -> Path:
    """Where a checkpoint is written before it is complete; renamed to `output` at the end."""
    return output.with_name(output.name + ".partial")


def resume_dir(output: Path) -> Path:
    """Where a running job keeps what it needs to resume (training checkpoints); removed when
    the job ends."""
    return output.with_name(output.name + ".resume")


def describe_errors(errors: list[dict]) -> list[tuple[str | None, str]]:
    """pydantic errors -> (field such as "calibration.nsamples", message) pairs, as the API
    and the CLI print them."""
    out: list[tuple[str | None, str]] = []
    for err in errors:
        if err.get("type") == "json_invalid":  # loc holds a character offset, not a field
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            out.append(("body", f"not valid JSON ({reason})"))
            continue
        parts = [str(p) for p in err.get("loc", ())]
        if parts and parts[0] in _LOC_ROOTS:
            parts = parts[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        named = _FIELD_PREFIX.match(msg) if not parts else None  # a spec-level check names it
        out.append((named.group(1) if named else ".".join(parts) or None, msg))
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


# what training.objective stands for (the papers' mix: 0.5 KL + 0.5 CE at T = 2)
OBJECTIVES: dict[str, dict[str, Any]] = {
    "kl": {"distill": True, "kl_weight": 1.0, "lm_weight": 0.0, "temperature": 2.0},
    "lm": {"distill": False, "kl_weight": 0.0, "lm_weight": 1.0, "temperature": 2.0},
    "paper": {"distill": True, "kl_weight": 0.5, "lm_weight": 0.5, "temperature": 2.0},
}


# the pruning schedule's fields of TrainingSpec: training only (recovery keeps the mask fixed)
SCHEDULE_FIELDS = ("initial_sparsity", "warmup_steps", "prune_every", "cooldown_steps")


class TrainingSpec(_Strict):
    """One run of the training engine: data, step budget, optimizer, objective.

    Defaults: distillation from the dense teacher at T = 2 with no LM term, because the
    teacher's soft labels carry the LM signal and what the pruned model lost; AdamW with 10%
    linear warm-up then linear decay; the learning rate defaults per use (see `lr`).
    """

    dataset: str = Field(
        "wikitext2",
        description="as calibration.dataset; named datasets train on their "
        "calibration split (wikitext2: valid), never on the evaluation split",
    )
    steps: int = Field(100, ge=1, le=1_000_000, description="optimizer steps")
    seqlen: int = Field(256, ge=8, le=32768, description="tokens per training sequence")
    batch_size: int = Field(4, ge=1, le=4096, description="sequences per optimizer step")
    micro_batch: int = Field(
        1, ge=1, le=4096, description="sequences per forward; gradients accumulate to batch_size"
    )
    lr: float | None = Field(
        None,
        gt=0,
        le=1,
        description="peak learning rate (default: 1e-4 for weights, 1e-2 for mask scores)",
    )
    lr_warmup_steps: int | None = Field(None, ge=0, description="default: 10% of steps")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    distill: bool = Field(
        True,
        description="KL(teacher || student) on the logits (default: on; off for a method "
        "whose objective is the language-model loss, such as movement)",
    )
    temperature: float = Field(2.0, gt=0, le=100, description="distillation temperature T")
    lm_weight: float = Field(
        0.0, ge=0, le=100, description="weight of the language-model loss (1.0 when not distilling)"
    )
    kl_weight: float = Field(
        1.0, ge=0, le=100, description="weight of the distillation term T^2 KL (with distill)"
    )
    objective: Literal["kl", "lm", "paper"] | None = Field(
        None,
        description="the objective in one word, instead of distill, kl_weight, lm_weight and "
        "temperature: 'kl' = KL to the teacher at T = 2; 'lm' = the language-model loss; "
        "'paper' = 0.5 KL + 0.5 LM cross-entropy at T = 2 (the mix of the movement, SMP and "
        "Prune Once for All papers); default: the method's (see distill)",
    )
    lr_rewind: bool = Field(
        False,
        description="gmp: learning-rate rewinding (Prune Once for All): the linear decay "
        "spans the steps outside the pruning ramp and goes back to its value at the ramp's "
        "start at every pruning step",
    )
    seed: int = Field(0, description="training window seed")
    checkpoint_every: int = Field(
        25, ge=1, description="steps between checkpoints of the trainable state (for resume)"
    )
    holdout: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="share of a user's training data (a .txt/.jsonl file or "
        "upload) held out, split by `seed`, for the held-out perplexity in the report; named "
        "datasets are never split (they train on their calibration split)",
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=64,
        description="recovery: processes (FSDP ranks, one per GPU) that train the model "
        "sharded; default: the visible GPUs (at most batch_size / micro_batch, a divisor of "
        "it), 1 on CPU (more on CPU: gloo ranks)",
    )
    offload: Literal["none", "cpu"] = Field(
        "none",
        description="recovery: cpu keeps the trained weights' fp32 master, gradients and AdamW "
        "state in host memory and steps the optimizer on the CPU (FSDP's CPUOffloadPolicy), so "
        "the GPU holds the teacher, masks and one layer at a time; runs through the FSDP ranks "
        "even with one process",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="bf16: bf16 autocast for forward and backward, fp32 master weights "
        "and optimizer state, the teacher held in bf16; auto: bf16 on a CUDA GPU with bf16 or "
        "a CPU with AMX/AVX512-BF16, fp32 elsewhere (the report says which ran)",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="recompute each decoder layer's activations in the backward instead "
        "of holding them (less memory, about a third more compute); default: on only when "
        "the stage would not fit the device without it (the report says which ran)",
    )
    # the pruning schedule of movement and gmp (cubic, Zhu & Gupta 2017)
    initial_sparsity: float = Field(
        0.0, ge=0, lt=1, description="movement/gmp: sparsity v_0 the schedule starts from"
    )
    warmup_steps: int | None = Field(
        None, ge=0, description="movement/gmp: steps t_0 before pruning starts (default 10%)"
    )
    prune_every: int | None = Field(
        None,
        ge=1,
        description="movement/gmp: steps between pruning steps (default: every "
        "step for movement; the ramp / 10 for gmp)",
    )
    cooldown_steps: int | None = Field(
        None,
        ge=0,
        description="movement/gmp: steps at the target with the mask fixed at the "
        "end (default 20%)",
    )

    @model_validator(mode="before")
    @classmethod
    def _objective_preset(cls, data: Any) -> Any:
        """`objective` sets the four fields it stands for; giving one of them as well with
        another value is a contradiction (an error naming both). The preset's own values are
        no contradiction: a stored spec holds them beside its objective and reads back."""
        if not isinstance(data, dict) or data.get("objective") is None:
            return data
        name = data["objective"]
        preset = OBJECTIVES.get(name) if isinstance(name, str) else None
        if preset is None:
            return data  # the Literal names what is allowed
        both = [k for k in preset if k in data and data[k] != preset[k]]
        if both:
            raise ValueError(
                f"objective {data['objective']!r} sets {', '.join(preset)}; drop "
                f"{', '.join(both)} or the objective"
            )
        return {**data, **preset}

    @model_validator(mode="after")
    def _weights(self) -> TrainingSpec:
        given = self.model_fields_set
        default = type(self).model_fields["kl_weight"].default
        # the default is no contradiction: a stored spec of a method that turns distillation
        # off (movement) holds it and reads back
        if not self.distill and "kl_weight" in given and self.kl_weight not in (0, default):
            raise ValueError(
                "kl_weight: it weights the distillation term, which is off (distill false); "
                "set distill true or drop kl_weight"
            )
        if self.distill and self.kl_weight == 0:
            why = "nothing to train on" if self.lm_weight == 0 else "no distillation term"
            raise ValueError(
                f"kl_weight 0 with distill on and lm_weight {self.lm_weight:g}: {why}; for the "
                "LM loss alone set distill false (or objective 'lm')"
            )
        return self

    @model_validator(mode="after")
    def _batches(self) -> TrainingSpec:
        if self.batch_size % self.micro_batch:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of micro_batch {self.micro_batch}"
            )
        n = self.processes or 1
        if self.batch_size % (self.micro_batch * n):
            raise ValueError(
                f"processes: each of the {n} processes takes micro-batches of the same batch, so "
                f"batch_size {self.batch_size} must be a multiple of micro_batch x processes "
                f"= {self.micro_batch * n}"
            )
        return self

    def schedules(self) -> bool:
        """Whether any pruning-schedule field was set."""
        return bool(self.initial_sparsity) or any(
            getattr(self, f) is not None for f in SCHEDULE_FIELDS[1:]
        )

    def schedule_steps(self, default_every: int | None = None) -> tuple[int, int, int, int]:
        """(warmup t_0, prune_every dt, pruning steps n, cooldown): defaults 10% warm-up, 20%
        cool-down (the movement paper's 1 and 2 of 10 epochs), dt = ramp // 10 unless given
        (`default_every`). ValueError naming the field when they do not fit `steps`."""
        t0 = self.warmup_steps if self.warmup_steps is not None else self.steps // 10
        cool = self.cooldown_steps if self.cooldown_steps is not None else self.steps // 5
        ramp = self.steps - t0 - cool
        if ramp < 1:
            raise ValueError(
                f"training.warmup_steps: warm-up {t0} + cool-down {cool} leave no step of the "
                f"{self.steps} to prune in; lower them or raise training.steps"
            )
        dt = self.prune_every or default_every or max(1, ramp // 10)
        if dt > ramp:
            raise ValueError(
                f"training.prune_every: {dt} is longer than the {ramp} steps between warm-up "
                f"and cool-down; allowed: 1..{ramp}"
            )
        return t0, dt, ramp // dt, cool


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


PLAN_FOR_PATTERN = r"^[0-9]{1,4}[xX][0-9]{1,7}(\.[0-9]{1,3})?(MiB|GiB|TiB|MB|GB|TB)$"


class JobCreate(PruneSpec):
    """Body of POST /v1/jobs: a PruneSpec whose model is a name, never a local path."""

    model: str = Field(
        ..., min_length=1, max_length=MAX_NAME, description="hub id org/name, or a model name"
    )
    dry_run: bool = Field(
        False,
        description="answer 200 with the plan (memory per device and stage, from the "
        "model's config.json) and queue nothing",
    )
    plan_for: str | None = Field(
        None,
        max_length=32,
        pattern=PLAN_FOR_PATTERN,
        description="dry_run: plan for these devices, COUNTxSIZE such as 8x80GiB (default: "
        "the workers' devices, PRUNESERVE_PLAN_DEVICES)",
    )

    def spec(self) -> PruneSpec:
        """The job's spec: the body without the dry-run fields."""
        return PruneSpec.model_validate(self.model_dump(exclude={"dry_run", "plan_for"}))


class JobState(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class Progress(BaseModel):
    """Where a running job is: stage, layer i of N, percent, ETA."""

    stage: str = "queued"
    layer: int = 0
    n_layers: int = 0
    percent: float = 0.0
    eta_s: float | None = None
    message: str | None = None
    step: int = 0  # training steps done (stage train / recover)
    n_steps: int = 0
    loss: float | None = None


class JobError(BaseModel):
    type: str
    message: str


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


class Artifact(BaseModel):
    path: str
    size: int
    sha256: str


class JobPublic(BaseModel):
    """A job as the API returns it."""

    id: str
    state: JobState
    spec: PruneSpec
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    summary: ReportSummary | None = None


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = None


class JobEvent(BaseModel):
    ts: datetime
    kind: Literal["state", "stage", "layer", "warning", "info", "error"]
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ArtifactList(BaseModel):
    items: list[Artifact]


class DatasetPublic(BaseModel):
    id: str
    filename: str
    size: int
    sha256: str
    created_at: datetime


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: a message, and the field when one is to blame."""

    detail: str
    field: str | None = None

    @model_validator(mode="after")
    def _nonempty(self) -> ErrorBody:
        if not self.detail:
            raise ValueError("detail must not be empty")
        return self
