"""Masked weights as a parametrization, W' = W * M, so the model's own forward runs unchanged.

`FixedMask`: M is given (recovery). `ScoreMask`: M = select(S) from trainable scores S with a
straight-through estimator, dL/dS = dL/dM = W * dL/dW' (SMP, movement). Masks are kept in the
(out, in) layout of get_weight; modules storing weights transposed (GPT-2 Conv1D) get M^T.

Every tensor a mask holds lives where the module's weight lives: `attach` moves the mask to the
weight's device, whatever device the mask was built on. A weight that trains and is not fp32
gets an fp32 master copy (`attach(..., master=True)`): the optimizer updates the copy, the
forward sees it cast to the stored dtype, and `bake` writes it back in that dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from worker.engine.model.hf_types import HFModule

Select = Callable[[torch.Tensor], torch.Tensor]  # scores (out, in) -> pruned mask (True = pruned)


def transposed(module: HFModule) -> bool:
    return type(module).__name__ == "Conv1D"


class _StraightThrough(torch.autograd.Function):
    """keep = 1 - select(S) forward; the gradient passes to S unchanged."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, select: Select) -> torch.Tensor:
        return (~select(scores.detach())).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class _Mask(nn.Module):
    stored: torch.dtype | None = None  # the module's own dtype when W is an fp32 master copy

    def _out(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.stored is None else w.to(self.stored)


class FixedMask(_Mask):
    keep: torch.Tensor  # a buffer: True = kept, in the stored weight's layout

    def __init__(self, pruned: torch.Tensor, transpose: bool):
        super().__init__()
        keep = ~pruned
        self.register_buffer("keep", keep.t().contiguous() if transpose else keep)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self._out(w * self.keep.to(w.dtype))


class ScoreMask(_Mask):
    def __init__(self, scores: torch.Tensor, select: Select, transpose: bool):
        super().__init__()
        self.scores = nn.Parameter(scores.float().clone())  # (out, in)
        self.select, self.transpose = select, transpose

    def keep(self) -> torch.Tensor:
        return _StraightThrough.apply(self.scores, self.select)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        keep = self.keep()
        return self._out(w * (keep.t() if self.transpose else keep).to(w.dtype))

    def pruned(self) -> torch.Tensor:
        """The mask the current scores select, (out, in), True = pruned."""
        with torch.no_grad():
            return self.select(self.scores)


def attach(module: HFModule, mask: _Mask, master: bool = False) -> None:
    """Parametrize `module.weight` by `mask`, moved to the weight's device; with `master`, a
    weight stored in another dtype than fp32 trains as an fp32 copy."""
    w = module.weight
    mask.to(w.device)
    if master and w.dtype != torch.float32:
        mask.stored = w.dtype
        module.weight = nn.Parameter(w.detach().float(), requires_grad=w.requires_grad)
    parametrize.register_parametrization(module, "weight", mask, unsafe=True)


def original(module: HFModule) -> nn.Parameter:
    """The unmasked weight under the parametrization (what trains when weights train)."""
    return module.parametrizations.weight.original


def bake(module: HFModule, pruned: torch.Tensor) -> None:
    """Remove the parametrization; the weight becomes exactly W with `pruned` set to +0, in
    the module's own dtype."""
    stored = module.parametrizations.weight[0].stored
    w = original(module).detach()
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    mask = pruned.t() if transposed(module) else pruned
    out = w.masked_fill(mask.to(w.device), 0)
    if stored is not None:
        module.weight = nn.Parameter(out.to(stored), requires_grad=False)
    else:
        module.weight.data.copy_(out)
    module.weight.requires_grad_(False)
