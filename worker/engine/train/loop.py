"""THE training loop: AdamW, linear warm-up then linear decay, gradient accumulation to the
batch size, a step budget, progress and cancel every step, checkpoints every K steps.

Where it runs: on the device of the model's parameters; every tensor the tasks create follows
the module it serves (masked.py). In `precision` (precision.py): bf16 autocast around forward
and backward with fp32 master weights, the teacher held in the compute dtype only while the
stage runs. Memory: gradient checkpointing (transformers' own) when asked, the loss from the
last hidden states chunk by chunk (objective.py), windows drawn a micro-batch at a time."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from worker.engine.errors import Cancelled, Interrupted
from worker.engine.model.hf_types import HFModel
from worker.engine.progress import Reporter
from worker.engine.train.checkpoint import Checkpoints, Saved
from worker.engine.train.heads import head_of, last_hidden, vocab_of
from worker.engine.train.objective import Objective
from worker.engine.train.precision import autocast, compute_dtype, held_as, name_of
from worker.engine.train.schedule import rewound_step

GRAD_CLIP = 1.0


class Task(Protocol):
    """What a training-based use supplies: what trains, what happens after each step, and
    the final masks."""

    stage: str  # "train" or "recover"
    trainable: str  # for the report, e.g. "kept weights"

    default_lr: float  # when the spec gives none

    def attach(self) -> dict[str, nn.Parameter]:
        """Parametrize the model; return the parameters the optimizer trains, by stable name.
        A task may also have `state() -> dict[str, Tensor]`: more tensors a checkpoint keeps
        (movement scores, gmp masks)."""

    def before_step(self, step: int) -> None:
        """Called before step `step` (0-based) runs, also the first step after a resume: set
        the step's mask (a pruning schedule)."""

    def after_step(self, step: int) -> None:
        """Called after optimizer step `step` (0-based), e.g. to update scores."""

    def finish(self) -> dict[str, torch.Tensor]:
        """Remove the parametrizations, bake the weights; the final masks by module name."""


class OneProcess:
    """How the loop shares its work: here, not at all. train/rank.py's FSDP ranks shard the
    model and take their part of each batch through the same four calls."""

    def wrap(self, model, teacher, params: dict) -> dict:
        return params  # the parameters the optimizer trains (FSDP replaces them)

    def rows(self, batch_size: int, micro_batch: int) -> range:
        return range(0, batch_size, micro_batch)  # offsets of this process's micro-batches

    def total(self, loss: float) -> float:
        return loss  # the step's loss over every process

    def finish(self, task: Task) -> dict[str, torch.Tensor]:
        return task.finish()


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int
    micro_batch: int
    lr: float
    warmup_steps: int
    weight_decay: float
    checkpoint_every: int
    precision: str = "fp32"  # auto | fp32 | bf16 (precision.py)
    checkpointing: bool = False  # gradient checkpointing of the student's layers
    # learning-rate rewinding at the pruning steps: (t_0, dt, end) of the pruning schedule
    lr_rewind: tuple[int, int, int] | None = None


@dataclass
class LoopResult:
    loss: list[float]
    times: list[float]
    resumed_from_step: int
    trainable_params: int
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    precision: str = "fp32"  # what ran: "bf16" or "fp32"
    checkpointing: bool = False  # whether it ran

    @property
    def time_per_step_s(self) -> float:
        return round(statistics.median(self.times), 3) if self.times else 0.0


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up over `warmup_steps`, then linear decay to 0 at the last step. With
    `lr_rewind` the decay reads `rewound_step` (schedule.py): back to the ramp's starting
    value at every pruning step, spread over the steps outside the ramp (never above lr)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    at, total = step, cfg.steps
    if cfg.lr_rewind is not None:
        start, every, end = cfg.lr_rewind
        at, total = rewound_step(step, start, every, end), cfg.steps - (end - start)
    rest = max(1, total - cfg.warmup_steps)
    return cfg.lr * min(1.0, max(0.0, 1 - (at - cfg.warmup_steps) / rest))


class Rows(Protocol):
    def rows(self, start: int, count: int) -> torch.Tensor: ...

    def labels(self, start: int, count: int) -> torch.Tensor | None: ...


class _TensorRows:
    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def rows(self, start: int, count: int) -> torch.Tensor:
        return self.ids[start : start + count]

    def labels(self, start: int, count: int) -> None:
        return None


@contextlib.contextmanager
def checkpointed(model: HFModel, on: bool) -> Iterator[bool]:
    """transformers' gradient checkpointing of the decoder layers for the block (non-reentrant,
    so frozen inputs still pass gradients); yields whether it is on. Only the checkpointed
    layers are flagged as training (what transformers asks for it), so dropout stays off."""
    if not (on and getattr(model, "supports_gradient_checkpointing", False)):
        yield False
        return
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # its name from transformers 5.x on
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
    for m in layers:
        m.training = True
    try:
        yield True
    finally:
        for m in layers:
            m.training = False
        off = getattr(model, "activation_checkpointing_disable", None)
        (off or model.gradient_checkpointing_disable)()


def train(
    model: HFModel,
    teacher: nn.Module | None,
    ids: torch.Tensor | Rows,
    task: Task,
    objective: Objective,
    cfg: LoopConfig,
    reporter: Reporter,
    checkpoints: Checkpoints,
    shard: OneProcess | None = None,
    labels: torch.Tensor | None = None,
) -> LoopResult:
    """Train `task` on windows `ids` ((steps * batch_size, seqlen), or drawn as needed by
    `ids.rows`); step t uses rows [t * batch_size, (t + 1) * batch_size), so a resumed run
    sees the same data. `labels` (as `ids`; -100: no loss there, e.g. a chat's prompt) when
    not every token trains, else the windows' own (`ids.labels`). The teacher is read where it
    is and held on the model's device in the compute dtype for the stage, after the task
    attached (SMP reads dense weights)."""
    device = next(model.parameters()).device
    windows: Rows = _TensorRows(ids) if isinstance(ids, torch.Tensor) else ids
    dtype = compute_dtype(cfg.precision, device)
    for p in model.parameters():
        p.requires_grad_(False)
    params = task.attach()
    for p in params.values():
        p.requires_grad_(True)
    shard = shard or OneProcess()
    params = shard.wrap(model, teacher, params)
    opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    kept = {**params, **(task.state() if hasattr(task, "state") else {})}  # what checkpoints hold
    saved = checkpoints.load(kept, opt) or Saved(0, [], [])
    start = saved.step
    if start:
        reporter.warn(
            f"resuming {task.stage} at step {start} of {cfg.steps} from the previous "
            "attempt's checkpoint"
        )
    losses, times = list(saved.loss), list(saved.times)
    teacher_dtype = dtype if dtype != torch.float32 else next(model.parameters()).dtype
    vocab = vocab_of(model)
    with held_as(teacher, device, teacher_dtype), checkpointed(model, cfg.checkpointing) as ckpt:
        heads = (head_of(model), head_of(teacher) if teacher is not None else None)
        for step in range(start, cfg.steps):
            try:
                reporter.check_cancel()
            except (Cancelled, Interrupted):
                checkpoints.save(kept, opt, Saved(step, losses, times))
                raise
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            task.before_step(step)
            total = 0.0
            seqlen = 0
            for a in shard.rows(cfg.batch_size, cfg.micro_batch):
                row = step * cfg.batch_size + a
                try:  # drawing windows checks for cancel: keep the state before this step
                    x = windows.rows(row, cfg.micro_batch).to(device)
                except (Cancelled, Interrupted):
                    checkpoints.save(kept, opt, Saved(step, losses, times))
                    raise
                seqlen = x.shape[1]
                y = (
                    labels[row : row + cfg.micro_batch]
                    if labels is not None
                    else windows.labels(row, cfg.micro_batch)
                )
                y = y.to(device) if y is not None else None
                with autocast(device, dtype):
                    with torch.no_grad():
                        ht = last_hidden(teacher, x) if teacher is not None else None
                    hs = last_hidden(model, x)
                    total += objective.backward(
                        hs, ht, x, heads, vocab, x.shape[0] / cfg.batch_size, y
                    )
                del hs, ht
            total = shard.total(total)
            nn.utils.clip_grad_norm_(list(params.values()), GRAD_CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)
            task.after_step(step)
            dt = time.perf_counter() - t0
            losses.append(round(total, 6))
            times.append(round(dt, 4))
            speed = cfg.batch_size * seqlen / dt
            message = f"step {step + 1}/{cfg.steps} loss {total:.4f}, {speed:.0f} tok/s"
            done = step + 1
            try:
                reporter.step(done, cfg.steps, message, loss=round(total, 6))
            except Interrupted:  # the job store is gone for now: keep this step for the restart
                checkpoints.save(kept, opt, Saved(done, losses, times))
                raise
            if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                checkpoints.save(kept, opt, Saved(done, losses, times))
    n_params = sum(p.numel() for p in kept.values() if p.requires_grad)
    masks = shard.finish(task)
    checkpoints.clear()
    return LoopResult(losses, times, start, n_params, masks, name_of(dtype), ckpt)
