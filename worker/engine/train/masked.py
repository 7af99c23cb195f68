"""Masked weights as a parametrization, W' = W * M, so the model's own forward runs unchanged.

`KeptValues`: M is given and only the kept entries are parameters (recovery): the trained
tensor is the vector of kept values, so its fp32 master copy, gradient and AdamW moments cost
(1 - sparsity) of a dense weight's, and a pruned entry has none. `FixedMask`: M is given, the
whole W trains (pruning schedules, whose masks change). `ScoreMask`: M = select(S) from
trainable scores S with a straight-through estimator, dL/dS = dL/dM = W * dL/dW' (SMP,
movement). Masks are kept in the (out, in) layout of get_weight; modules storing weights
transposed (GPT-2 Conv1D) get M^T.

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


_BITS = (1, 2, 4, 8, 16, 32, 64, 128)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """bool -> uint8, 8 entries a byte (row-major), on the mask's device."""
    flat = mask.reshape(-1)
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    bits = torch.tensor(_BITS, dtype=torch.uint8, device=mask.device)
    return (flat.reshape(-1, 8).to(torch.uint8) * bits).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    bits = torch.tensor(_BITS, dtype=torch.uint8, device=packed.device)
    n = 1
    for d in shape:
        n *= d
    return packed.reshape(-1, 1).bitwise_and(bits).ne(0).reshape(-1)[:n].reshape(shape)


class KeptValues(_Mask):
    """W = the kept values scattered into zeros at the kept positions (row-major in the
    stored layout). The parametrized tensor (`original`) is the 1-D vector of kept values; the
    weight is built in the dtype the forward computes in (the autocast dtype, else the stored
    one), so no full-size fp32 product is made.

    How the positions are held: where every row keeps as many entries (N:M, per-row
    pruning), the kept columns of each row (int16, int32 past 32,767 columns): the weight is
    a `scatter` along rows and its gradient a `gather`, which a CPU runs several times faster
    than the masked ones; else a bool mask (`masked_scatter`, gradient `masked_select`).
    `packed`: a mask of bits (1/8 byte a weight, unpacked a module at a time), for FSDP ranks,
    where buffers are not sharded."""

    cols: torch.Tensor  # buffers, one of them registered
    keep: torch.Tensor

    def __init__(self, pruned: torch.Tensor, transpose: bool, packed: bool = False):
        super().__init__()
        keep = ~pruned
        keep = keep.t().contiguous() if transpose else keep
        self.shape, self.packed = tuple(keep.shape), packed
        counts = keep.sum(1)
        self.by_row = not packed and bool((counts == counts[0]).all())
        if self.by_row:
            wide = self.shape[1] > torch.iinfo(torch.int16).max
            cols = keep.nonzero()[:, 1].view(self.shape[0], -1)
            self.register_buffer("cols", cols.to(torch.int32 if wide else torch.int16))
        else:
            self.register_buffer("keep", pack_bits(keep) if packed else keep)

    def mask(self) -> torch.Tensor:
        """The kept positions (stored layout), bool."""
        if self.by_row:
            out = torch.zeros(self.shape, dtype=torch.bool, device=self.cols.device)
            return out.scatter_(1, self.cols.long(), True)
        return unpack_bits(self.keep, self.shape) if self.packed else self.keep

    def _build(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=dtype, device=values.device)
        if self.by_row:
            return out.scatter(1, self.cols.long(), values.to(dtype).view(self.shape[0], -1))
        return out.masked_scatter(self.mask(), values.to(dtype))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self._build(
            values, _autocast_dtype(values.device.type) or self.stored or values.dtype
        )

    def full(self, values: torch.Tensor) -> torch.Tensor:
        """The whole weight from `values`, in their dtype (no autocast)."""
        return self._build(values, values.dtype)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on this device type now, or None (off, or a device
    type autocast does not know, e.g. meta)."""
    try:
        on = torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return None
    return torch.get_autocast_dtype(device_type) if on else None


def attach_kept(module: HFModule, mask: KeptValues) -> None:
    """Parametrize `module.weight` by its kept values: `original(module)` becomes the fp32
    vector of the kept entries (the only copy the module holds); the mask moves to the
    weight's device."""
    w = module.weight
    count = int(mask.mask().sum())  # where the mask was built (a meta copy has no values)
    mask.to(w.device)
    if w.dtype != torch.float32:
        mask.stored = w.dtype
    if w.is_meta:
        values = torch.empty(count, device=w.device)
    else:
        values = w.detach().masked_select(mask.mask()).float()
    module.weight = nn.Parameter(values, requires_grad=w.requires_grad)
    parametrize.register_parametrization(module, "weight", mask, unsafe=True)


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
    how = module.parametrizations.weight[0]
    stored = how.stored
    w = original(module).detach()
    if isinstance(how, KeptValues):
        w = how.full(w)
        stored = stored or w.dtype  # the weight is a new tensor (its shape was the values')
    parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    mask = pruned.t() if transposed(module) else pruned
    out = w.masked_fill(mask.to(w.device), 0)
    if stored is not None:
        module.weight = nn.Parameter(out.to(stored), requires_grad=False)
    else:
        module.weight.data.copy_(out)
    module.weight.requires_grad_(False)
