"""Gradual magnitude pruning's training task (Zhu & Gupta, 2017, as Prune Once for All uses
it): weights train and the lowest |W| are pruned at each pruning step of the cubic schedule
(train/schedule.py).
"""

from __future__ import annotations

import torch
from torch import nn

from worker.engine.methods.base import Method
from worker.engine.model.hf_types import HFModule
from worker.engine.model.model_io import get_weight
from worker.engine.prune.masks import Pattern
from worker.engine.train.masked import FixedMask, attach, bake, original, transposed
from worker.engine.train.schedule import Schedule, select_at
from worker.engine.train.tasks import Modules, TaskInputs


def _keep_layout(module: HFModule, keep: torch.Tensor) -> torch.Tensor:
    """(out, in) keep mask in the layout of the module's stored weight."""
    return keep.t().contiguous() if transposed(module) else keep


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


METHOD = Method(None, task=GradualMagnitude.build)
