"""Static Model Pruning's training (Jiang et al., ACL 2023; kongds/SMP): the weights stay at
their dense values and a score per weight learns from the first-order signal through a
straight-through mask, trained by the engine's AdamW.

- Start (`smp_init`): `oneshot`, the scores of the init method's mask at the target (step 0
  reproduces it exactly); `zero`, S = 0 from the dense model with the sparsity v_t on the cubic
  schedule (equal scores fall by |W|, the lower pruned first).
- Variant (`smp_variant`): SMP-L, every matrix at v_t; SMP-S, matrix i keeps
  (1 - v_t) * m_i / mean(m) of its weights, m_i = mean sigmoid(S_i / p) and the mean over the
  same kind of matrix in every layer (the reference's per-projection thresholds), within
  [0.5%, 100%].
- Regulariser (`smp_lambda`): lambda_t * mean over matrices of mean sigmoid(S_i), lambda_t
  ramped with v_t / v_f; its gradient joins the scores' once per step.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

from worker.engine.methods.base import Method
from worker.engine.methods.smp.prune import smp
from worker.engine.model.model_io import get_weight, set_weight
from worker.engine.train.masked import ScoreMask, attach, bake, original, transposed
from worker.engine.train.schedule import select_at, ties_by_magnitude
from worker.engine.train.tasks import TaskInputs

FLOOR = 0.005  # the least fraction of a matrix SMP-S keeps


def kind(name: str) -> str:
    """The same projection in every layer: the module name without its layer index."""
    return re.sub(r"\.\d+\.", ".*.", name)


def smp_s_ratios(means: dict[str, float], sparsity: float) -> dict[str, float]:
    """SMP-S: each matrix's sparsity from m_i = mean sigmoid(S_i / p), keep fractions in
    proportion to m_i within each kind of matrix, averaging 1 - sparsity."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in means:
        groups[kind(name)].append(name)
    keep, out = 1.0 - sparsity, {}
    for names in groups.values():
        mean = sum(means[n] for n in names) / len(names)
        for n in names:
            k = keep * means[n] / mean if mean > 0 else keep
            out[n] = 1.0 - min(1.0, max(FLOOR, k))
    return out


class LearnedMask:
    stage, trainable = "train", "mask scores (weights frozen at their dense values)"
    default_lr = 1e-2  # scores live in [0, 1) from a one-shot start

    def __init__(self, inputs: TaskInputs):
        opts = inputs.options
        self.modules, self.opts = inputs.modules, opts
        self.pattern, self.schedule = inputs.pattern, inputs.schedule
        self.dense_weight: Callable[[str], torch.Tensor] = inputs.dense_weight
        self.zero = opts.smp_init == "zero"
        self.scores = (
            {n: torch.zeros(get_weight(m).shape) for n, m in self.modules.items()}
            if self.zero
            else inputs.scores
        )
        self.ratio = self.schedule.initial if self.schedule is not None else self.pattern.ratio
        self.ratios: dict[str, float] = {}  # SMP-S: per matrix
        self.lam_t = 0.0
        self.penalised: set[str] = set()
        self.masks: dict[str, ScoreMask] = {}

    @classmethod
    def smp(cls, inputs: TaskInputs) -> LearnedMask:
        return cls(inputs)

    def _select(self, scores: torch.Tensor, name: str) -> torch.Tensor:
        if self.zero:
            w = original(self.modules[name])
            scores = ties_by_magnitude(scores, w.t() if transposed(self.modules[name]) else w)
        ratio = self.ratios.get(name, self.ratio)
        return select_at(scores, ratio, self.pattern, self.opts.scope)

    def _penalty(self, grad: torch.Tensor, name: str) -> torch.Tensor:
        """The regulariser's gradient, added at the first backward of a step."""
        if not self.lam_t or name in self.penalised:
            return grad
        self.penalised.add(name)
        s = self.masks[name].scores.detach()
        sig = torch.sigmoid(s)
        return grad + (self.lam_t / (s.numel() * len(self.masks))) * sig * (1 - sig)

    def attach(self) -> dict[str, nn.Parameter]:
        params = {}
        for name, module in self.modules.items():
            set_weight(module, self.dense_weight(name))  # the walk zeroed the init mask
            select = functools.partial(self._select, name=name)
            mask = ScoreMask(self.scores[name], select, transposed(module))
            attach(module, mask)  # on the weight's device; the weights stay as they are
            original(module).requires_grad_(False)
            mask.scores.register_hook(functools.partial(self._penalty, name=name))
            self.masks[name] = mask
            params[name] = mask.scores
        return params

    @torch.no_grad()
    def _set_sparsity(self, ratio: float) -> None:
        self.ratio = ratio
        target = self.pattern.ratio
        self.lam_t = self.opts.smp_lambda * (ratio / target if target > 0 else 1.0)
        if self.opts.smp_variant == "S":
            p = self.opts.smp_p
            means = {n: float(torch.sigmoid(m.scores / p).mean()) for n, m in self.masks.items()}
            self.ratios = smp_s_ratios(means, ratio)

    def before_step(self, step: int) -> None:
        self.penalised.clear()
        s = self.schedule
        self._set_sparsity(s.sparsity_at(step) if s is not None else self.pattern.ratio)

    def after_step(self, step: int) -> None:
        pass

    def finish(self) -> dict[str, torch.Tensor]:
        self._set_sparsity(self.pattern.ratio)
        out = {}
        for name, module in self.modules.items():
            out[name] = self.masks[name].pruned().cpu()
            bake(module, out[name])
        return out


METHOD = Method(smp, task=LearnedMask.smp)
