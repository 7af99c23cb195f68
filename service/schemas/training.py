"""One run of the training engine (a method's own training, or recovery after pruning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from service.schemas.common import _Strict

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
