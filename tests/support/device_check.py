"""A stand-in accelerator for CPU-only machines: the model on the `meta` device, and a check
that every torch call takes its tensors from one device. A tensor the engine creates on the
CPU and hands to a module on the accelerator then fails here as it would on a GPU (meta alone
lets some of these pass, e.g. a CPU input to a meta Linear). Values on meta are unknown: what
reads them back (`item`, `float`, `cpu`, `tolist`) gets zeros of the right shape (a test
of truth gets True)."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

META = torch.device("meta")
MOVES = {
    "to",
    "copy_",
    "_to_copy",
    "_has_compatible_shallow_copy_type",
    "__set__",
    "set_",
    "cuda",
    "cpu",
}  # what moves tensors between devices on purpose
_READS = {
    torch.Tensor.item,
    torch.Tensor.__float__,
    torch.Tensor.tolist,
    torch.Tensor.cpu,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
}


class DeviceMismatch(AssertionError):
    pass


def _devices(args, kwargs) -> set[torch.device]:
    flat, _ = tree_flatten((args, kwargs or {}))
    found = set()
    for t in flat:
        if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0):
            found.add(t.device)  # CPU scalars mix with any device, as on CUDA
    return found


class SameDevice(TorchFunctionMode):
    """Raise DeviceMismatch when one torch call mixes tensors of two devices."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _READS and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            fill = torch.ones if func is torch.Tensor.__bool__ else torch.zeros  # all() holds
            zeros = fill(args[0].shape, dtype=args[0].dtype)
            return zeros if func is torch.Tensor.cpu else func(zeros, *args[1:], **kwargs)
        devices = _devices(args, kwargs)
        if len(devices) > 1 and getattr(func, "__name__", "") not in MOVES:
            names = ", ".join(sorted(str(d) for d in devices))
            raise DeviceMismatch(f"{getattr(func, '__name__', func)} mixes devices {names}")
        return func(*args, **kwargs)
