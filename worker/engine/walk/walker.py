"""THE one sequential layer walker, shared by every method and architecture.

Capture the inputs of decoder layer 0 once; then, per layer: hooks -> stats -> prune ->
re-run the layer to propagate pruned activations. One layer on the device at a time.
The walker knows nothing of the request: it gets the Linears to prune and a prune callable.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from worker.engine.errors import UnsupportedModelError, reraise_typed
from worker.engine.model.model_io import get_weight, set_weight
from worker.engine.progress import Reporter
from worker.engine.walk.experts import RoutedStats, expert_groups
from worker.engine.walk.hooks import InputGroup, LayerStop, StatsCollector
from worker.engine.walk.stats import InputStats, Scratch
from worker.engine.walk.streaming import LayerStreamer

if TYPE_CHECKING:
    from worker.engine.prune.reconstruct import Reconstructor

TOKENS_PER_BATCH = 1024  # samples per layer call = this // seqlen (at least 1)

LayerCalls = dict[int, tuple[tuple, dict]]  # batch size -> (positional args, keyword args)
# (names, their dense (out, in) weights, the statistics of their shared input) -> new weights
PruneFn = Callable[[list[str], list[torch.Tensor], InputStats | None], list[torch.Tensor]]
# (layer index, [(names, their dense weights, stats)]) -> None: called before a layer's groups
BeginLayer = Callable[[int, list[tuple[list[str], list[torch.Tensor], InputStats | None]]], None]


@dataclass
class Captured:
    hidden: torch.Tensor | None  # (nsamples, seqlen, hidden) inputs of layer 0, model dtype
    # (None once the walk took it as its buffer)
    calls: list[LayerCalls]  # per layer: the extra arguments the model passes it
    batch: int


def _taken(cap: Captured) -> torch.Tensor:
    """The captured inputs of layer 0 (the walk's buffer from then on)."""
    if cap.hidden is None:
        raise RuntimeError("the captured inputs were taken already")
    return cap.hidden


class _StopCapture(Exception):
    pass


def spans(n: int, batch: int) -> list[tuple[int, int]]:
    return [(s, min(s + batch, n)) for s in range(0, n, batch)]


def batch_size(seqlen: int, nsamples: int) -> int:
    return max(1, min(nsamples, TOKENS_PER_BATCH // seqlen))


@torch.no_grad()
def capture(streamer: LayerStreamer, ids: torch.Tensor, batch: int) -> Captured:
    """Run the embeddings on `ids` (nsamples, seqlen) and record every layer's call arguments.

    Layers are replaced by recorders that pass hidden states through, so no layer computes;
    the forward stops at the last layer, before the final norm and head.
    """
    model, layers, device = streamer.model, streamer.layers, streamer.device
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
                state["extras"] = output_extras(streamer, idx, hidden_states, args, kwargs)
            # return what the real layer returns: a model that indexes outputs[0] gets hidden
            return hidden_states if state["extras"] is False else (hidden_states, *state["extras"])

        return forward

    for idx, layer in enumerate(layers):
        layer.forward = recorder(idx)
    try:
        with streamer.shell(tokens=ids):
            for s, e in spans(n, batch):
                state["span"] = (s, e)
                with suppress(_StopCapture):
                    model(input_ids=ids[s:e].to(device), use_cache=False)
    finally:
        for layer in layers:
            del layer.forward
    sizes = sorted({e - s for s, e in spans(n, batch)})
    missing = [i for i, c in enumerate(calls) if sorted(c) != sizes]
    if missing:
        raise UnsupportedModelError(
            f"decoder layer {missing[0]} was not called once per batch by the model's forward; "
            "the layer list found is not the model's sequential decoder"
        )
    return Captured(state["hidden"], calls, batch)


def output_extras(streamer: LayerStreamer, idx: int, hidden, args: tuple, kwargs: dict):
    """Run the real layer `idx` once: False when it returns a tensor, else what follows the
    hidden states in its tuple (older layers return (hidden, attn, ...); the model takes [0])."""
    with streamer.layer(idx) as layer:
        y = type(layer).forward(layer, hidden, *args, **kwargs)
    return tuple(y[1:]) if isinstance(y, tuple) else False


@torch.no_grad()
def run_layer(layer, inps: torch.Tensor, outs: torch.Tensor | None, calls: LayerCalls, batch: int):
    """Run one layer over all samples; write outputs to `outs` unless it is None. `outs` may
    be `inps` itself: each batch's output replaces its input once computed (samples are
    independent), so one activation buffer serves the whole walk."""
    for s, e in spans(inps.shape[0], batch):
        args, kwargs = calls[e - s]
        try:
            y = layer(inps[s:e], *args, **kwargs)
        except LayerStop:  # a statistics pass that has all it needs from this batch
            continue
        if outs is not None:
            outs[s:e] = y[0] if isinstance(y, tuple) else y


def prune_groups(groups, linears: dict[str, nn.Module], prune: PruneFn, begin=None) -> None:
    """Prune each group of Linears sharing one input and write the new weights back; `begin`
    (if any) sees the whole layer first."""
    if begin is not None:
        begin([(names, [get_weight(linears[n]) for n in names], st) for names, st in groups])
    for names, stats in groups:
        dense = [get_weight(linears[n]) for n in names]
        for name, w in zip(names, prune(names, dense, stats), strict=True):
            set_weight(linears[name], w)


@torch.no_grad()
def walk(
    streamer: LayerStreamer,
    ids: torch.Tensor | None,
    needs: str | None,
    targets: list[dict[str, nn.Module]],
    prune: PruneFn,
    reporter: Reporter,
    warn: Callable[[str], None] = lambda message: None,
    begin_layer: BeginLayer | None = None,
    start: int = 0,
    start_inps: torch.Tensor | None = None,
    after_layer: Callable[[int, torch.Tensor | None, nn.Module], None] | None = None,
    recon: Reconstructor | None = None,
) -> None:
    """Prune `targets[i]` (full name -> Linear, or expert slice of a fused MoE parameter) of
    every decoder layer i, in order; tell `warn` what the user should know. `begin_layer`
    sees each layer's groups, weights and statistics before any of them is pruned (OWL).

    `needs` is the statistics to collect: None (no calibration), "norms" or "hessian".
    A resumed walk begins at layer `start` with `start_inps` (that layer's saved input);
    `after_layer(i, input of layer i + 1, layer i)` runs once layer i is final and unloaded
    (None after the last layer: no layer reads its output, so it is not computed).
    `recon` (a reconstruct.Reconstructor, needs statistics) gives each layer its dense output
    before pruning, trains the pruned layer towards it and runs it to feed the next.
    """
    n_layers = len(streamer.layers)
    arch = type(streamer.model).__name__
    cap = None
    scratch = Scratch()  # the statistics' per-batch work space, for every layer
    inps = None
    if needs is not None:
        assert ids is not None, "statistics need calibration windows"
        with reraise_typed(f"{arch}: capturing the inputs of the decoder layers"):
            cap = capture(streamer, ids, batch_size(ids.shape[1], ids.shape[0]))
        inps, cap.hidden = _taken(cap), None
        if start_inps is not None:
            inps = start_inps.to(inps.device, inps.dtype)
        if recon is not None:
            recon.begin(inps)
    for i in range(start, n_layers):
        reporter.check_cancel()
        with reraise_typed(f"{arch}: decoder layer {i}"), streamer.layer(i) as layer:
            if cap is None:
                groups = [([n], None) for n in targets[i]]  # no statistics: each matrix alone
            else:
                groups = layer_stats(
                    layer, targets[i], needs, ids, cap.calls[i], cap.batch, inps, warn, scratch
                )
                streamer.trim()
            begin = None if begin_layer is None else (lambda g, i=i: begin_layer(i, g))
            if recon is not None:
                assert cap is not None and inps is not None, "reconstruction needs statistics"
                target = recon.target(layer, inps, cap.calls[i], cap.batch)
            prune_groups(groups, targets[i], prune, begin)
            if recon is not None and cap is not None and inps is not None:
                batches = spans(inps.shape[0], cap.batch)
                recon.fit(i, n_layers, layer, targets[i], inps, target, cap.calls[i], batches)
            elif cap is not None and inps is not None and i + 1 < n_layers:  # next layer's input
                run_layer(layer, inps, inps, cap.calls[i], cap.batch)  # (none after the last)
            streamer.commit(i)
        if after_layer is not None:  # a checkpoint's own failure is not the layer's
            after_layer(i, inps if cap is not None and i + 1 < n_layers else None, layer)
        reporter.step(i + 1, n_layers, f"layer {i + 1}/{n_layers}")


@torch.no_grad()
def survey(
    streamer: LayerStreamer,
    ids: torch.Tensor,
    targets: list[dict[str, nn.Module]],
    visit: BeginLayer,
    reporter: Reporter,
) -> None:
    """A dense pass over `ids` (nothing pruned), one forward per layer: `visit(i, groups)` gets
    layer i's Linears with their dense weights and input statistics (column norms); the
    layer's dense outputs feed the next. OWL reads its outlier ratios from it."""
    arch = type(streamer.model).__name__
    with reraise_typed(f"{arch}: capturing the inputs of the decoder layers"):
        cap = capture(streamer, ids, batch_size(ids.shape[1], ids.shape[0]))
    inps, cap.hidden = _taken(cap), None
    n_layers = len(streamer.layers)
    scratch = Scratch()
    for i in range(n_layers):
        reporter.check_cancel()
        with reraise_typed(f"{arch}: decoder layer {i}"), streamer.layer(i) as layer:
            linears = {n: m for n, m in targets[i].items() if isinstance(m, nn.Module)}
            collector = StatsCollector(
                linears, False, ids.numel(), ids.shape[1], early_stop=False, scratch=scratch
            )
            with collector.hooks():
                run_layer(layer, inps, inps, cap.calls[i], cap.batch)
            visit(
                i,
                [
                    (g.names, [get_weight(linears[n]) for n in g.names], g.stats)
                    for g in collector.groups
                ],
            )


def layer_stats(layer, targets, needs, ids, calls, batch, inps, warn, scratch=None) -> list:
    """One statistics pass over `layer`: groups of Linears sharing an input with their stats,
    and each expert slice with the statistics of the tokens routed to it."""
    linears = {n: m for n, m in targets.items() if isinstance(m, nn.Module)}
    experts = {n: m for n, m in targets.items() if not isinstance(m, nn.Module)}
    hessian = needs == "hessian"
    collector = StatsCollector(
        linears, hessian, ids.numel(), ids.shape[1], early_stop=not experts, scratch=scratch
    )
    routed = RoutedStats(
        {n.rsplit(".", 1)[0]: m.module for n, m in experts.items()}, hessian, ids.numel(), scratch
    )
    with collector.hooks(), routed.hooks():
        run_layer(layer, inps, None, calls, batch)
    groups: list[tuple[list[str], InputStats | None]] = [
        (g.names, g.stats) for g in collector.groups
    ]
    seen = {n for g in collector.groups for n in g.names}
    for n in linears:
        if n not in seen:
            warn(
                f"{n}: not called by its layer on the calibration data (e.g. cross-attention "
                "without an encoder); left dense"
            )
    notes: list[str] = []  # experts no calibration token was routed to: magnitude
    for names, group in expert_groups(experts, routed, notes):
        groups.append((names, group.stats if group is not None else None))
    for note in notes:
        warn(note)
    return groups


__all__ = ["Captured", "InputGroup", "capture", "run_layer", "survey", "walk", "spans"]
