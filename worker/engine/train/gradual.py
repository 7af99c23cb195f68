"""The training tasks that prune while they train, on the cubic schedule (schedule.py):
`Movement` (Sanh et al., 2020): weights train and scores accumulate the movement signal;
`GradualMagnitude` (Zhu & Gupta, 2017, as Prune Once for All uses it): weights train and the
lowest |W| are pruned at each pruning step.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from worker.engine.model.hf_types import HFModule
from worker.engine.model.model_io import get_weight
from worker.engine.prune.masks import Pattern
from worker.engine.train.masked import FixedMask, ScoreMask, attach, bake, original, transposed
from worker.engine.train.schedule import Schedule, select_at
from worker.engine.train.tasks import Modules, TaskInputs


def _keep_layout(module: HFModule, keep: torch.Tensor) -> torch.Tensor:
    """(out, in) keep mask in the layout of the module's stored weight."""
    return keep.t().contiguous() if transposed(module) else keep


def ties_by_magnitude(scores: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Scores whose exact ties fall by |W| (the lower pruned first). Before any signal every
    score is 0, and the selector's own tie rule (the lower column) would prune the same
    columns in every row; 1e-30 * |W| only orders scores that are equal."""
    if not bool((scores == 0).any()):
        return scores
    return scores.double() + weight.detach().abs().double() * 1e-30


class Movement:
    """Hard movement: keep the top (1 - v_t) of S per row (or its N:M subset; equal scores fall
    by |W|, the lower pruned first). S starts at 0 and takes plain steps
    S -= alpha_S * W * dL/dW' after each optimizer step, so S = -alpha_S * sum_t W * dL/dW
    exactly as the paper writes it. Soft movement is `SoftMovement` (soft_movement.py)."""

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


class GradualMagnitude:
    """Weights train under a mask; at each pruning step of the schedule the mask becomes the
    lowest |W * M| at v_t (a pruned weight is 0 there, so it stays pruned as v_t grows)."""

    stage, trainable = "train", "weights (magnitude masks on the cubic schedule)"
    default_lr = 1e-4

    def __init__(self, modules: Modules, pattern: Pattern, schedule: Schedule, scope: str = "row"):
        self.modules, self.pattern, self.schedule, self.scope = modules, pattern, schedule, scope
        self.masks: dict[str, FixedMask] = {}

    @classmethod
    def build(cls, inputs: TaskInputs) -> GradualMagnitude:
        assert inputs.schedule is not None, "gmp prunes on the schedule of `training`"
        return cls(inputs.modules, inputs.pattern, inputs.schedule, inputs.options.scope)

    def attach(self) -> dict[str, nn.Parameter]:
        params = {}
        for name, module in self.modules.items():
            shape = get_weight(module).shape
            mask = FixedMask(torch.zeros(shape, dtype=torch.bool), transposed(module))
            attach(module, mask, master=True)
            self.masks[name] = mask
            params[name] = original(module)
        return params

    def state(self) -> dict[str, torch.Tensor]:
        return {f"keep.{n}": m.keep for n, m in self.masks.items()}

    @torch.no_grad()
    def _prune_to(self, ratio: float) -> None:
        for name, module in self.modules.items():
            keep = self.masks[name].keep
            w = original(module) * keep.to(original(module).dtype)
            w = w.t() if transposed(module) else w  # (out, in)
            pruned = select_at(w.abs().float(), ratio, self.pattern, self.scope)
            keep.copy_(_keep_layout(module, ~pruned))

    def before_step(self, step: int) -> None:
        s = self.schedule
        if s.prunes_at(step) or (step == 0 and s.initial > 0):
            self._prune_to(s.sparsity_at(step))

    def after_step(self, step: int) -> None:
        pass

    def finish(self) -> dict[str, torch.Tensor]:
        self._prune_to(self.schedule.final)  # a no-op when the schedule already got there
        out = {}
        for name, module in self.modules.items():
            keep = self.masks[name].keep
            out[name] = ~(keep.t() if transposed(module) else keep).cpu()
            bake(module, out[name])
        return out
