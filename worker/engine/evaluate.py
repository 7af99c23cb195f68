"""Perplexity with the standard protocol (non-overlapping windows, tokenized once)."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from worker.engine.errors import CalibrationError
from worker.engine.progress import Reporter
from worker.engine.walker import shell_on


@contextmanager
def streamed(model: nn.Module, layers: nn.ModuleList, device: torch.device):
    """Run a full forward with only one decoder layer on `device` at a time."""
    if device.type == "cpu":
        yield
        return
    handles = []
    for layer in layers:
        handles.append(layer.register_forward_pre_hook(lambda m, a: m.to(device) and None))
        handles.append(layer.register_forward_hook(lambda m, a, o: m.to("cpu") and None))
    try:
        with shell_on(model, layers, device):
            yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def perplexity(
    model: nn.Module,
    layers: nn.ModuleList,
    ids: torch.Tensor,
    seqlen: int,
    max_windows: int | None,
    device: torch.device,
    reporter: Reporter | None = None,
) -> tuple[float, int]:
    """exp(mean NLL) over non-overlapping windows of `seqlen` tokens; returns (ppl, windows).

    As the reference: each window's mean loss is weighted by seqlen.
    """
    windows = ids.shape[1] // seqlen
    if max_windows:
        windows = min(windows, max_windows)
    if windows == 0:
        raise CalibrationError(
            f"evaluation text has {ids.shape[1]} tokens, fewer than seqlen {seqlen}"
        )
    nll = 0.0
    with streamed(model, layers, device):
        for j in range(windows):
            x = ids[:, j * seqlen : (j + 1) * seqlen].to(device)  # (1, T)
            logits = model(input_ids=x, use_cache=False).logits.float()  # (1, T, V)
            loss = nn.functional.cross_entropy(logits[0, :-1], x[0, 1:])
            nll += loss.item() * seqlen
            if reporter:
                reporter.step(j + 1, windows, f"window {j + 1}/{windows}")
    return math.exp(nll / (windows * seqlen)), windows
