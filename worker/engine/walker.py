"""THE one sequential layer walker, shared by every method and architecture.

Capture the inputs of decoder layer 0 once; then, per layer: hooks -> stats -> prune ->
re-run the layer to propagate pruned activations. One layer on the device at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import torch
from torch import nn

from service.schemas import ModuleReport, PruneSpec
from worker.engine.errors import UnsupportedModelError, reraise_typed
from worker.engine.experts import (
    RoutedStats,
    expert_groups,
    expert_targets,
    experts_modules,
    router_linears,
)
from worker.engine.hooks import InputGroup, LayerStop, StatsCollector
from worker.engine.masks import check_n_of_m
from worker.engine.methods import Method, get_method
from worker.engine.model_io import get_weight, prunable_linears, set_weight
from worker.engine.progress import Reporter
from worker.engine.stats import relative_error

TOKENS_PER_BATCH = 1024  # samples per layer call = this // seqlen (at least 1)

LayerCalls = dict[int, tuple[tuple, dict]]  # batch size -> (positional args, keyword args)


@dataclass
class Captured:
    hidden: torch.Tensor  # (nsamples, seqlen, hidden) inputs of layer 0, model dtype
    calls: list[LayerCalls]  # per layer: the extra arguments the model passes it
    batch: int


class _StopCapture(Exception):
    pass


def spans(n: int, batch: int) -> list[tuple[int, int]]:
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


def batch_size(seqlen: int, nsamples: int) -> int:
    return max(1, min(nsamples, TOKENS_PER_BATCH // seqlen))


@contextmanager
def shell_on(model: nn.Module, layers: nn.ModuleList, device: torch.device) -> Iterator[None]:
    """Move everything but the decoder layers (embeddings, rotary, norm, head) to `device`."""
    if device.type == "cpu":
        yield
        return
    inside = {id(m) for m in layers.modules()}
    shell = [m for m in model.modules() if id(m) not in inside]
    for m in shell:
        m._apply(lambda t: t.to(device), recurse=False)
    try:
        yield
    finally:
        for m in shell:
            m._apply(lambda t: t.to("cpu"), recurse=False)


@torch.no_grad()
def capture(model, layers: nn.ModuleList, ids: torch.Tensor, device, batch: int) -> Captured:
    """Run the embeddings on `ids` (nsamples, seqlen) and record every layer's call arguments.

    Layers are replaced by recorders that pass hidden states through, so no layer computes;
    the forward stops at the last layer, before the final norm and head.
    """
    n, seqlen = ids.shape
    calls: list[LayerCalls] = [{} for _ in layers]
    state: dict = {"hidden": None, "span": (0, 0), "extras": None}

    def recorder(idx: int):
        def forward(hidden_states, *args, **kwargs):
            s, e = state["span"]
            if idx == 0:
                if state["hidden"] is None:
                    shape = (n, seqlen, hidden_states.shape[-1])
                    state["hidden"] = torch.empty(shape, dtype=hidden_states.dtype, device=device)
                state["hidden"][s:e] = hidden_states
            # keyed by the span's size, as run_layer looks it up (not by a tensor dimension)
            calls[idx].setdefault(e - s, (args, kwargs))
            if idx == len(layers) - 1:
                raise _StopCapture
            if state["extras"] is None:
                state["extras"] = output_extras(layers[idx], hidden_states, args, kwargs, device)
            # return what the real layer returns: a model that indexes outputs[0] gets hidden
            return hidden_states if state["extras"] is False else (hidden_states, *state["extras"])

        return forward

    for idx, layer in enumerate(layers):
        layer.forward = recorder(idx)
    try:
        with shell_on(model, layers, device):
            for s, e in spans(n, batch):
                state["span"] = (s, e)
                with suppress(_StopCapture):
                    model(input_ids=ids[s:e].to(device), use_cache=False)
    finally:
        for layer in layers:
            del layer.forward
    missing = [
        i for i, c in enumerate(calls) if sorted(c) != sorted({e - s for s, e in spans(n, batch)})
    ]
    if missing:
        raise UnsupportedModelError(
            f"decoder layer {missing[0]} was not called once per batch by the model's forward; "
            "the layer list found is not the model's sequential decoder"
        )
    return Captured(state["hidden"], calls, batch)


def output_extras(layer: nn.Module, hidden, args: tuple, kwargs: dict, device) -> tuple | bool:
    """Run the real `layer` once: False when it returns a tensor, else what follows the hidden
    states in its tuple (older layers return (hidden, attn, ...) and the model takes [0])."""
    layer.to(device)
    try:
        y = type(layer).forward(layer, hidden, *args, **kwargs)
    finally:
        layer.to("cpu")
    return tuple(y[1:]) if isinstance(y, tuple) else False


@torch.no_grad()
def run_layer(layer, inps: torch.Tensor, outs: torch.Tensor | None, calls: LayerCalls, batch: int):
    """Run one layer over all samples; write outputs to `outs` unless it is None."""
    for s, e in spans(inps.shape[0], batch):
        args, kwargs = calls[e - s]
        try:
            y = layer(inps[s:e], *args, **kwargs)
        except LayerStop:  # a statistics pass that has all it needs from this batch
            continue
        if outs is not None:
            outs[s:e] = y[0] if isinstance(y, tuple) else y


def prune_group(
    names: list[str],
    modules: dict[str, nn.Module],
    method: Method,
    spec: PruneSpec,
    group: InputGroup | None,
) -> list[ModuleReport]:
    """Prune Linears sharing one input with `method`; write weights back; report each."""
    sparsity = spec.parsed_sparsity
    stats = group.stats if group is not None else None
    dense = [get_weight(modules[n]) for n in names]
    result = method.fn(dense, stats, sparsity, spec.options)
    sample = stats.token_sample() if stats is not None else None
    reports = []
    for name, w0, w in zip(names, dense, result.weights, strict=True):
        reports.append(
            ModuleReport(
                name=name,
                shape=tuple(w.shape),
                sparsity=float((w == 0).float().mean()),
                nm_ok=check_n_of_m(w, sparsity.n, sparsity.m) if sparsity.is_nm else None,
                rel_error=relative_error(w0, w, sample) if sample is not None else None,
                damping=result.info.get("damping"),
            )
        )
        set_weight(modules[name], w)
    return reports


@torch.no_grad()
def walk(
    model,
    layers_name: str,
    layers: nn.ModuleList,
    ids: torch.Tensor | None,
    method: Method,
    spec: PruneSpec,
    device: torch.device,
    reporter: Reporter,
    warnings: list[str] | None = None,
) -> list[ModuleReport]:
    """Prune every decoder layer in order; returns one report per pruned matrix (Linear or
    expert slice) and appends what the user should know to `warnings`."""
    warnings = [] if warnings is None else warnings
    reports: list[ModuleReport] = []
    n_layers = len(layers)
    cap = None
    if method.needs is not None:
        batch = batch_size(ids.shape[1], ids.shape[0])
        with reraise_typed(f"{type(model).__name__}: capturing the inputs of {layers_name}"):
            cap = capture(model, layers, ids, device, batch)
        inps, outs = cap.hidden, torch.empty_like(cap.hidden)
    for i, layer in enumerate(layers):
        reporter.check_cancel()
        layer.to(device)
        prefix = f"{layers_name}.{i}"
        with reraise_typed(f"{type(model).__name__}: decoder layer {prefix}"):
            linears = prunable_linears(layer, prefix, spec.skip)
            routers = router_linears(layer, prefix, linears)  # routers stay dense
            linears = {n: m for n, m in linears.items() if n not in routers}
            experts = expert_targets(layer, prefix, spec.skip)
            targets = {**linears, **experts}
            if cap is None:
                groups = [([n], None) for n in targets]  # no statistics: each matrix alone
            else:
                hessian = method.needs == "hessian"
                collector = StatsCollector(
                    linears, hessian, ids.numel(), ids.shape[1], early_stop=not experts
                )
                routed = RoutedStats(experts_modules(layer, prefix), hessian, ids.numel())
                with collector.hooks(), routed.hooks():
                    run_layer(layer, inps, None, cap.calls[i], cap.batch)
                groups = [(g.names, g) for g in collector.groups]
                seen = {n for g in collector.groups for n in g.names}
                warnings += [f"{n}: not called by its layer on the calibration data (e.g. "
                             "cross-attention without an encoder); left dense"
                             for n in linears if n not in seen]  # fmt: skip
                groups += expert_groups(experts, routed, warnings)
            for names, group in groups:
                # an expert without routed tokens has no statistics: magnitude
                how = method if group is not None or cap is None else get_method("magnitude")
                reports.extend(prune_group(names, targets, how, spec, group))
            if cap is not None:
                run_layer(layer, inps, outs, cap.calls[i], cap.batch)
                inps, outs = outs, inps
        layer.to("cpu")
        reporter.step(i + 1, n_layers, f"layer {i + 1}/{n_layers}")
    return reports


__all__ = ["Captured", "InputGroup", "capture", "run_layer", "walk", "shell_on", "spans"]
