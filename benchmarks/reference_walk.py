"""The reference's one-shot loop, transcribed: locuslab/wanda `lib/prune.py` (`prune_wanda`,
`prune_sparsegpt`, `prepare_calibration_input`) with `lib/layerwrapper.py::WrappedGPT` and
`lib/sparsegpt.py::SparseGPT.add_batch`; `fasterprune` is the transcription the tests hold.

Kept as there: a Catcher on layer 0 records each sample's input, layers run one sample at a
time with forward hooks feeding the statistics, every Linear is pruned on its own, and the
layer runs again to produce the next layer's inputs. One adaptation: current transformers
passes the rotary `position_embeddings` (and more) to each layer, so the Catcher keeps every
keyword argument the model passes instead of only `attention_mask` and `position_ids`.
"""

from __future__ import annotations

import math
from contextlib import suppress

import torch
from torch import nn

from tests.worker.engine.methods.test_sparsegpt import reference_fasterprune


def find_layers(module: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}


def _next_batch(stats, inp: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
    """The head both reference `add_batch`es share: `inp` as (columns, tokens), the running
    statistic scaled in place by n / (n + batch) and `stats.nsamples` advanced by the batch."""
    if len(inp.shape) == 2:
        inp = inp.unsqueeze(0)
    tmp = inp.shape[0]
    if len(inp.shape) == 3:
        inp = inp.reshape((-1, inp.shape[-1]))
    running *= stats.nsamples / (stats.nsamples + tmp)
    stats.nsamples += tmp
    return inp.t()


class WrappedGPT:
    """Wanda's statistics: scaler_row = running mean over samples of ||X_j||^2."""

    def __init__(self, layer: nn.Linear):
        self.layer = layer
        self.scaler_row = torch.zeros(layer.weight.shape[1])
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor, out: torch.Tensor) -> None:
        inp = _next_batch(self, inp, self.scaler_row).type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


class SparseGPTStats:
    """SparseGPT's running H = 2/n * sum X X^T."""

    def __init__(self, layer: nn.Linear):
        self.layer = layer
        cols = layer.weight.shape[1]
        self.H = torch.zeros((cols, cols))
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor, out: torch.Tensor) -> None:
        inp = _next_batch(self, inp, self.H)  # advances nsamples first, as the reference
        inp = math.sqrt(2 / self.nsamples) * inp.float()
        self.H += inp.matmul(inp.t())


def prepare_calibration_input(model, ids: torch.Tensor):
    """(inps, outs, kwargs): layer 0's input per sample, caught one sample at a time."""
    layers = model.model.layers
    n, seqlen = ids.shape
    inps = torch.zeros((n, seqlen, model.config.hidden_size), dtype=model.dtype)
    cache: dict = {"i": 0, "kwargs": None}

    class Catcher(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, inp, *args, **kwargs):
            inps[cache["i"]] = inp
            cache["i"] += 1
            cache["kwargs"] = kwargs
            raise ValueError

    layers[0] = Catcher(layers[0])
    for j in range(n):
        with suppress(ValueError):
            model(ids[j : j + 1], use_cache=False)
    layers[0] = layers[0].module
    return inps, torch.zeros_like(inps), cache["kwargs"]


def wanda_prune(subset, wrapped, prune_n: int, prune_m: int) -> None:
    for name in subset:
        W_metric = torch.abs(subset[name].weight.data) * torch.sqrt(
            wrapped[name].scaler_row.reshape((1, -1))
        )
        W_mask = torch.zeros_like(W_metric) == 1
        for ii in range(W_metric.shape[1]):
            if ii % prune_m == 0:
                tmp = W_metric[:, ii : (ii + prune_m)].float()
                W_mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
        subset[name].weight.data[W_mask] = 0


def sparsegpt_prune(subset, wrapped, prune_n: int, prune_m: int) -> None:
    for name in subset:
        W = subset[name].weight.data
        pruned = reference_fasterprune(W, wrapped[name].H, 0.5, prune_n, prune_m, 128, 0.01)
        subset[name].weight.data = pruned.to(W.dtype)


@torch.no_grad()
def prune(model, ids: torch.Tensor, method: str, prune_n: int = 2, prune_m: int = 4) -> None:
    """prune_wanda / prune_sparsegpt of the reference for an N:M pattern, in place."""
    model.config.use_cache = False
    inps, outs, kwargs = prepare_calibration_input(model, ids)
    stats, apply = {
        "wanda": (WrappedGPT, wanda_prune),
        "sparsegpt": (SparseGPTStats, sparsegpt_prune),
    }[method]
    layers = model.model.layers
    n = ids.shape[0]
    for i in range(len(layers)):
        layer = layers[i]
        subset = find_layers(layer)
        wrapped = {name: stats(subset[name]) for name in subset}

        def add_batch(name, wrapped=wrapped):
            def tmp(_, inp, out):
                wrapped[name].add_batch(inp[0].data, out.data)

            return tmp

        handles = [subset[name].register_forward_hook(add_batch(name)) for name in wrapped]
        for j in range(n):
            outs[j] = layer(inps[j].unsqueeze(0), **kwargs)[0]
        for h in handles:
            h.remove()
        apply(subset, wrapped, prune_n, prune_m)
        for j in range(n):
            outs[j] = layer(inps[j].unsqueeze(0), **kwargs)[0]
        inps, outs = outs, inps
