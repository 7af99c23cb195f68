"""THE training loop: AdamW, linear warm-up then linear decay, gradient accumulation to the
batch size, a step budget, progress and cancel every step, checkpoints every K steps."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from worker.engine.errors import Cancelled, Interrupted
from worker.engine.progress import Reporter
from worker.engine.train.checkpoint import Checkpoints, Saved
from worker.engine.train.objective import Objective

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


@dataclass
class LoopResult:
    loss: list[float]
    times: list[float]
    resumed_from_step: int
    trainable_params: int
    masks: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def time_per_step_s(self) -> float:
        return round(statistics.median(self.times), 3) if self.times else 0.0


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up over `warmup_steps`, then linear decay to 0 at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    rest = max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * max(0.0, 1 - (step - cfg.warmup_steps) / rest)


def train(
    model: nn.Module,
    teacher: nn.Module | None,
    ids: torch.Tensor,
    task: Task,
    objective: Objective,
    cfg: LoopConfig,
    reporter: Reporter,
    checkpoints: Checkpoints,
    shard: OneProcess | None = None,
    labels: torch.Tensor | None = None,
) -> LoopResult:
    """Train `task` on windows `ids` (steps * batch_size, seqlen); step t uses rows
    [t * batch_size, (t + 1) * batch_size), so a resumed run sees the same data. `labels`
    (as `ids`; -100: no loss there, e.g. a chat's prompt) when not every token trains."""
    device = next(model.parameters()).device
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
        reporter.warn(f"resuming {task.stage} at step {start} of {cfg.steps} from the previous "
                      "attempt's checkpoint")  # fmt: skip
    losses, times = list(saved.loss), list(saved.times)
    seqlen = ids.shape[1]
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
        for a in shard.rows(cfg.batch_size, cfg.micro_batch):
            row = step * cfg.batch_size + a
            x = ids[row : row + cfg.micro_batch].to(device)  # (micro, T)
            with torch.no_grad():
                t = teacher(input_ids=x, use_cache=False).logits if teacher is not None else None
            s = model(input_ids=x, use_cache=False).logits
            y = labels[row : row + cfg.micro_batch].to(device) if labels is not None else None
            loss = objective(s, t, x, y) * (x.shape[0] / cfg.batch_size)
            loss.backward()
            total += loss.item()
            del s, t, loss
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
    return LoopResult(losses, times, start, n_params, masks)
