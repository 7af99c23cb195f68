"""Movement pruning's training tasks (Sanh et al., 2020), on the cubic schedule
(train/schedule.py): weights train and scores accumulate the movement signal.

Hard movement (`Movement`): keep the top (1 - v_t) of the scores per row (or per matrix, or
its N:M subset).

Soft movement (`SoftMovement`): keep the weights whose score clears a threshold that every
matrix shares, so each matrix's sparsity is what its scores give.

The scores accumulate the movement signal as hard movement's do, S -= alpha_S * W * dL/dW',
plus the paper's regulariser lambda_t * mean sigmoid(S), normalised per matrix (each matrix's
mean, as the reference code computes it), so an element's push is lambda_t * sigmoid'(S) / n_i.
A matrix never keeps fewer than 0.5% of its weights (the reference's floor).

Two thresholds (`movement_threshold`):
- `schedule` (default): tau_t is the score that prunes exactly v_t of all the pruned matrices'
  weights together, v_t on the cubic schedule to `sparsity`; lambda_t = lambda * v_t / v_f.
  The requested sparsity holds overall; how it splits between matrices is the scores'.
- `fixed` (the paper's): keep sigmoid(S) > tau_t, tau_t ramped on the cubic schedule from 0 to
  `movement_tau`, lambda_t = lambda * tau_t / tau; the sparsity is what lambda gives, reported.
Equal scores (all of them at the start) fall by |W|, the lower pruned first.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from worker.engine.methods.base import Method
from worker.engine.model.hf_types import HFModule
from worker.engine.model.model_io import get_weight
from worker.engine.prune.masks import Pattern
from worker.engine.train.masked import ScoreMask, attach, bake, original, transposed
from worker.engine.train.schedule import Schedule, select_at, ties_by_magnitude
from worker.engine.train.tasks import Modules, TaskInputs


class Movement:
    """Hard movement: keep the top (1 - v_t) of S per row (or its N:M subset; equal scores fall
    by |W|, the lower pruned first). S starts at 0 and takes plain steps
    S -= alpha_S * W * dL/dW' after each optimizer step, so S = -alpha_S * sum_t W * dL/dW
    exactly as the paper writes it. Soft movement is `SoftMovement` (below)."""

    stage, trainable = "train", "weights and movement scores"
    default_lr = 1e-4

    def __init__(self, modules: Modules, pattern: Pattern, schedule: Schedule | None, options):
        self.modules, self.pattern, self.schedule = modules, pattern, schedule
        self.tau, self.lam, self.alpha = (
            options.movement_tau,
            options.movement_lambda,
            options.score_lr,
        )
        self.ratio = schedule.initial if schedule is not None else 0.0
        self.scope = options.scope
        self.masks: dict[str, ScoreMask] = {}

    @classmethod
    def build(cls, inputs: TaskInputs) -> Movement:
        return cls(inputs.modules, inputs.pattern, inputs.schedule, inputs.options)

    def _select(self, scores: torch.Tensor, module: HFModule) -> torch.Tensor:
        w: torch.Tensor = original(module)
        w = w.t() if transposed(module) else w  # (out, in), as the scores
        return select_at(ties_by_magnitude(scores, w), self.ratio, self.pattern, self.scope)

    def attach(self) -> dict[str, nn.Parameter]:
        params = {}
        for name, module in self.modules.items():
            scores = torch.zeros(get_weight(module).shape)
            select = functools.partial(self._select, module=module)
            mask = ScoreMask(scores, select, transposed(module))
            attach(module, mask, master=True)
            mask.scores.requires_grad_(True)
            self.masks[name] = mask
            params[name] = original(module)
        return params

    def state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold besides the optimizer's parameters."""
        return {f"scores.{n}": m.scores for n, m in self.masks.items()}

    def before_step(self, step: int) -> None:
        if self.schedule is not None:
            self.ratio = self.schedule.sparsity_at(step)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        for mask in self.masks.values():
            s = mask.scores
            grad = s.grad if s.grad is not None else torch.zeros_like(s)
            s.sub_(self.alpha * grad)
            s.grad = None

    def finish(self) -> dict[str, torch.Tensor]:
        if self.schedule is not None:
            self.ratio = self.schedule.final
        out = {}
        for name, module in self.modules.items():
            out[name] = self.masks[name].pruned().cpu()
            bake(module, out[name])
        return out


FLOOR = 0.005  # the least fraction of a matrix kept


def floor_count(numel: int) -> int:
    return int(FLOOR * numel) + 1


def count_at_most(keys: list[torch.Tensor], theta: float) -> int:
    return sum(int((k <= theta).sum()) for k in keys)


def global_threshold(keys: list[torch.Tensor], k: int) -> float:
    """The k-th smallest value of all `keys` together (k >= 1), by bisection on the value, so
    no concatenated copy of every score is made. Exact up to values that are equal."""
    lo = min(float(x.min()) for x in keys)
    hi = max(float(x.max()) for x in keys)
    if count_at_most(keys, lo) >= k:
        return lo
    for _ in range(200):  # lo: fewer than k at or below; hi: at least k
        mid = lo + (hi - lo) / 2
        if mid in (lo, hi):
            break
        if count_at_most(keys, mid) >= k:
            hi = mid
        else:
            lo = mid
    return hi


class SoftMovement(Movement):
    def __init__(self, modules, pattern: Pattern, schedule: Schedule | None, options):
        super().__init__(modules, pattern, schedule, options)
        self.fixed = options.movement_threshold == "fixed"
        self.theta = -math.inf  # prune key <= theta (the schedule mode's shared threshold)
        self.tau_t = 0.0  # the fixed mode's threshold on sigmoid(S)
        self.lam_t = 0.0

    def summary(self, masks) -> str:
        """The report's line on the sparsity the shared threshold gave."""
        return soft_summary(masks, "fixed" if self.fixed else "schedule")

    def _weight(self, module: nn.Module) -> torch.Tensor:
        w = original(module)
        return w.t() if transposed(module) else w

    def _keys(self, scores: torch.Tensor, module: nn.Module) -> torch.Tensor:
        if self.fixed:
            return scores
        return ties_by_magnitude(scores, self._weight(module))

    def _select(self, scores: torch.Tensor, module: nn.Module) -> torch.Tensor:
        keys = self._keys(scores, module)
        if self.fixed:
            pruned = torch.sigmoid(keys) <= self.tau_t if self.tau_t > 0 else keys < -math.inf
        else:
            pruned = keys <= self.theta
        keep_min = floor_count(keys.numel())
        if keys.numel() - int(pruned.sum()) < keep_min:  # the floor: keep the top scores
            cut = torch.kthvalue(keys.flatten(), keys.numel() - keep_min).values
            pruned = keys <= cut
        return pruned

    def _ramp(self, step: int) -> float:
        """How far along the schedule step `step` is, v_t / v_f (1 without a schedule)."""
        if self.schedule is None or self.schedule.final <= 0:
            return 1.0
        return self.schedule.sparsity_at(step) / self.schedule.final

    @torch.no_grad()
    def _set_threshold(self, step: int) -> None:
        if self.fixed:  # tau ramps from 0 to movement_tau on the schedule's cubic
            s = self.schedule
            ramp = 1.0 if s is None else Schedule(0.0, 1.0, s.start, s.every, s.n).sparsity_at(step)
            self.tau_t, self.lam_t = self.tau * ramp, self.lam * ramp
            return
        self.lam_t = self.lam * self._ramp(step)
        keys = [self._keys(m.scores, self.modules[n]) for n, m in self.masks.items()]
        total = sum(k.numel() for k in keys)
        k = int(round(total * self.ratio, 9))
        self.theta = global_threshold(keys, k) if k > 0 else -math.inf

    def before_step(self, step: int) -> None:
        if self.schedule is not None:
            self.ratio = self.schedule.sparsity_at(step)
        self._set_threshold(step)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        for mask in self.masks.values():
            s = mask.scores
            grad = s.grad if s.grad is not None else torch.zeros_like(s)
            if self.lam_t:
                sig = torch.sigmoid(s)
                grad = grad + (self.lam_t / s.numel()) * sig * (1 - sig)
            s.sub_(self.alpha * grad)
            s.grad = None

    def finish(self) -> dict[str, torch.Tensor]:
        if self.schedule is not None:
            self.ratio = self.schedule.final
            self._set_threshold(self.schedule.end)
        return super().finish()


def build_movement(inputs: TaskInputs) -> Movement:
    """The movement task the options ask for: hard (top-v per row) or soft."""
    task = SoftMovement if inputs.options.movement_soft else Movement
    return task(inputs.modules, inputs.pattern, inputs.schedule, inputs.options)


def soft_summary(masks, threshold: str) -> str:
    """One line for the report: overall sparsity and its spread over the matrices."""
    per = [float(m.mask().float().mean()) for _, m in masks]
    total = sum(int(m.mask().sum()) for _, m in masks)
    overall = total / max(sum(m.shape[0] * m.shape[1] for _, m in masks), 1)
    line = (
        f"soft movement: {overall:.3f} of the weights pruned, per matrix "
        f"{min(per, default=0):.3f}-{max(per, default=0):.3f}"
    )
    if threshold == "fixed":
        line += "; with the fixed threshold the sparsity asked for is not enforced"
    return line


METHOD = Method(None, task=build_movement)
