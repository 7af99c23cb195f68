"""Block-wise reconstruction inside the walk (EBFT, Guo et al. 2024): after a decoder layer is
pruned, its pruned Linears' kept weights are trained, masks fixed (W * M, pruned weights
exactly 0), so that its output matches the dense layer's on the calibration windows.

The target is the dense layer's output on the pruned model's activations (`pruned_input`,
EBFT's choice: the layer learns to repair what it is given) or on the dense model's
(`dense_input`: a second buffer carries the dense stream; the layer learns to undo the
error of the layers before it too). Fused MoE expert tensors (3-D) keep their one-shot
weights: only Linears train. State (the dense stream, the reports) saves and loads itself.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from service.reconstruction import BlockReport, ReconstructionSpec
from worker.engine.model.hf_types import HFModule
from worker.engine.progress import Reporter
from worker.engine.prune.mask_state import MaskState
from worker.engine.train import masked
from worker.engine.train.block import BlockConfig, power, relative_error, train_block
from worker.engine.walk.walker import run_layer

LayerCalls = dict[int, tuple[tuple, dict]]


class Reconstructor:
    """Called by the walker: `target` before a layer is pruned, `fit` after (it also
    propagates: the walk's buffer leaves it holding the next layer's input)."""

    def __init__(self, spec: ReconstructionSpec, masks: MaskState, reporter: Reporter):
        self.spec, self.masks, self.reporter = spec, masks, reporter
        self.dense: torch.Tensor | None = None  # dense_input: the dense stream's next input
        self.blocks: list[BlockReport] = []
        self._out: torch.Tensor | None = None  # pruned_input: the target buffer, reused

    def begin(self, inps: torch.Tensor) -> None:
        """The walk's first input (layer 0's, or a resumed layer's: then the dense stream
        came back with load_state)."""
        if self.spec.target == "dense_input" and self.dense is None:
            self.dense = inps.clone()

    @torch.no_grad()
    def target(self, layer: nn.Module, inps, calls: LayerCalls, batch: int):
        """The dense layer's output (call before it is pruned); dense_input also advances
        the dense stream in place."""
        if self.spec.target == "dense_input":
            assert self.dense is not None, "start() sets the dense stream first"
            run_layer(layer, self.dense, self.dense, calls, batch)
            return self.dense
        if self._out is None or self._out.shape != inps.shape:
            self._out = torch.empty_like(inps)
        run_layer(layer, inps, self._out, calls, batch)
        return self._out

    def fit(
        self,
        i: int,
        n_layers: int,
        layer: nn.Module,
        modules: dict,
        inps,
        target,
        calls: LayerCalls,
        spans: list[tuple[int, int]],
    ) -> None:
        """Train layer i's pruned Linears (`modules`: name -> Linear or expert slice) towards
        `target`, then write the trained layer's output over `inps` (the next layer's input)."""
        t0 = time.perf_counter()
        mine = self.masks.modules
        linears: dict[str, HFModule] = {
            n: m for n, m in modules.items() if isinstance(m, nn.Module) and n in mine
        }
        fused = sum(1 for m in modules.values() if not isinstance(m, nn.Module))

        def forward(s: int, e: int) -> torch.Tensor:
            args, kwargs = calls[e - s]
            y = layer(inps[s:e], *args, **kwargs)
            return y[0] if isinstance(y, tuple) else y

        norm = power(target, spans)
        before = relative_error(forward, target, spans, norm)
        cfg = self.spec
        step_spans = max(1, -(-cfg.batch_size // (spans[0][1] - spans[0][0])))
        config = BlockConfig(cfg.epochs, cfg.lr, step_spans, cfg.weight_decay, cfg.seed)

        def on_epoch(epoch: int, loss: float) -> None:
            message = f"layer {i + 1}/{n_layers}: reconstruction epoch {epoch}/{cfg.epochs}"
            self.reporter.step(i, n_layers, f"{message}, loss {loss:.4g}", loss=round(loss, 6))

        with _kept_weights_train(layer, linears, self.masks) as params, torch.enable_grad():
            check = self.reporter.check_cancel
            losses = train_block(forward, params, target, spans, config, i, on_epoch, check)
        after = relative_error(forward, target, spans, norm, out=inps)  # the next input
        block = BlockReport(
            layer=i,
            modules=len(linears),
            experts_untouched=fused,
            params=sum(int(m.weight.numel()) for m in linears.values()),
            loss_before=round(before, 8),
            loss_after=round(after, 8),
            epoch_loss=losses,
            seconds=round(time.perf_counter() - t0, 3),
        )
        self.blocks.append(block)

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """(tensors, JSON) for the walk's checkpoint."""
        tensors = {} if self.dense is None else {"recon.dense": self.dense}
        return tensors, {"blocks": [b.model_dump() for b in self.blocks]}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.dense = tensors.get("recon.dense")
        self.blocks = [BlockReport.model_validate(b) for b in meta["blocks"]]


class _kept_weights_train:
    """For the duration: the Linears' weights are W * M (FixedMask), their W the only
    parameters of the layer that need gradients; afterwards W is baked with M's zeros."""

    def __init__(self, layer: nn.Module, linears: dict, masks: MaskState):
        self.layer, self.linears, self.masks = layer, linears, masks

    def __enter__(self) -> list[nn.Parameter]:
        self.flags = [(p, p.requires_grad) for p in self.layer.parameters()]
        for p, _ in self.flags:
            p.requires_grad_(False)
        self.pruned = {n: self.masks.modules[n].mask() for n in self.linears}
        params = []
        for n, m in self.linears.items():
            keep = masked.FixedMask(self.pruned[n].to(m.weight.device), masked.transposed(m))
            masked.attach(m, keep)
            params.append(masked.original(m))
            params[-1].requires_grad_(True)
        return params

    def __exit__(self, *exc: object) -> None:
        for n, m in self.linears.items():
            masked.bake(m, self.pruned[n])
        for p, flag in self.flags:
            p.requires_grad_(flag)
