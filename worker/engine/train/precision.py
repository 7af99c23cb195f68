"""Mixed precision of the training engine (and of anything else that trains: block-wise
reconstruction): which dtype the forward and backward compute in, and the autocast around them.

    dtype = compute_dtype(precision, device)     # torch.bfloat16 or torch.float32
    with autocast(device, dtype): loss = f(x); loss.backward()

bf16 is autocast only: the weights that train keep an fp32 master copy (masked.py) and AdamW's
state is fp32, so an update smaller than a bf16 ulp is not lost; frozen weights stay as loaded,
so what is not trained is saved bit-identical. `auto` is bf16 where the device computes it fast:
CUDA with bf16 support, or a CPU with AMX or AVX512-BF16; fp32 elsewhere.
"""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bf16 matmul units


@cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matmuls faster than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(f in cpu_flags() for f in FAST_BF16_FLAGS)
    return False


def compute_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """The dtype the forward and backward compute in for `precision` on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    return torch.bfloat16 if precision == "bf16" else torch.float32


def name_of(dtype: torch.dtype) -> str:
    """The precision's name in the report: 'bf16' or 'fp32'."""
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def autocast(device: torch.device | str, dtype: torch.dtype):
    """bf16 autocast on `device` for dtype bf16; nothing for fp32."""
    device = torch.device(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def held_as(module: torch.nn.Module | None, device: torch.device, dtype: torch.dtype):
    """`module`'s floating parameters held on `device` in `dtype` (its buffers on `device`, in
    their own dtype: rotary frequencies stay fp32) for the block, then the very tensors it had
    put back (no lossy round trip: the dense copy a later stage reads is unchanged). A new
    copy only where device or dtype differ; a tied weight is one copy."""
    if module is None:
        yield None
        return
    swapped: list[tuple[dict, str, torch.Tensor]] = []
    copies: dict[int, Any] = {}  # id -> its copy (a Parameter for a parameter)
    for sub in module.modules():
        for table, is_param in ((sub._parameters, True), (sub._buffers, False)):
            for name, t in list(table.items()):
                if t is None:
                    continue
                want = dtype if is_param and t.is_floating_point() else t.dtype
                if t.device == device and t.dtype == want:
                    continue
                if id(t) not in copies:
                    new = t.detach().to(device, want)
                    copies[id(t)] = nn.Parameter(new, requires_grad=False) if is_param else new
                swapped.append((table, name, t))
                table[name] = copies[id(t)]
    try:
        yield module
    finally:
        for table, name, t in reversed(swapped):
            table[name] = t
