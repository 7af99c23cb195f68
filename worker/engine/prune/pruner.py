"""The prune step the walker calls for each group of Linears that share one input: run the
method, refine its mask (DSnoT), record each mask in the mask state, measure the
reconstruction error, pass warnings on as they happen. With a layer profile (OWL) the walker
first shows it the whole layer, which sets that layer's pattern."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from worker.engine.methods.base import Method
from worker.engine.methods.magnitude.options import MagnitudeOptions
from worker.engine.methods.magnitude.prune import magnitude
from worker.engine.prune.dsnot import dsnot
from worker.engine.prune.mask_state import MaskState
from worker.engine.prune.masks import Pattern
from worker.engine.prune.owl import OWLAllocator
from worker.engine.walk.stats import InputStats, relative_error


@dataclass(frozen=True)
class ModuleResult:
    """What pruning one module measured (its sparsity and N:M check come from the masks)."""

    name: str
    rel_error: float | None
    damping: float | None
    swaps: int | None = None  # DSnoT: weights regrown (as many pruned)


@dataclass(frozen=True)
class DSnoTRefiner:
    max_cycles: int = 50
    update_threshold: float = 0.0
    var_power: float = 1.0


@dataclass
class Pruner:
    method: Method
    pattern: Pattern
    options: Any  # the method's own options model
    masks: MaskState
    warn: Callable[[str], None]  # told at once, as each warning happens
    profile: OWLAllocator | None = None  # per-layer sparsity; None: every layer at `pattern`
    refine: DSnoTRefiner | None = None
    results: list[ModuleResult] = field(default_factory=list)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # learned-mask methods
    _layer: Pattern | None = None  # the pattern of the layer being pruned
    _layer_index: int | None = None
    _layer_names: list[str] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """What the layers pruned so far left: results, learned-mask scores (tensors), the
        allocation (OWL)."""
        return {
            "results": [asdict(r) for r in self.results],
            "scores": dict(self.scores),
            "owl": None if self.profile is None else self.profile.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.results[:] = [ModuleResult(**r) for r in state["results"]]
        self.scores.update(state["scores"])
        if state["owl"] is not None and self.profile is not None:
            self.profile.load_state_dict(state["owl"])

    def begin_layer(self, index: int, groups: list) -> None:
        """Layer `index` is next: `groups` is [(names, dense weights, stats or None)]."""
        self.end_layer()
        if self.profile is None:
            return
        self._layer = replace(self.pattern, ratio=self.profile.allocate(index))
        self._layer_index = index
        self._layer_names = [n for names, _, _ in groups for n in names]

    def end_layer(self) -> None:
        """Tell the profile what the last layer really pruned (rounding per row)."""
        if self.profile is None or self._layer_index is None:
            return
        pruned = sum(int(self.masks.modules[n].mask().sum()) for n in self._layer_names)
        self.profile.achieved(self._layer_index, pruned)
        self._layer_index = None

    def __call__(
        self, names: list[str], weights: list[torch.Tensor], stats: InputStats | None
    ) -> list[torch.Tensor]:
        pattern = self._layer or self.pattern
        if stats is None and self.method.stats_for(self.options) is not None:
            # an expert no calibration token was routed to has no statistics: magnitude
            result = magnitude(weights, None, pattern, MagnitudeOptions())
        else:
            assert self.method.fn is not None, "a method that only trains is not walked"
            result = self.method.fn(weights, stats, pattern, self.options)
        swaps: list[int | None] = [None] * len(names)
        out, masks = list(result.weights), list(result.masks)
        if self.refine is not None and stats is not None:
            for i, (w0, w, m) in enumerate(zip(weights, out, masks, strict=True)):
                r = dsnot(w0, w, m, stats, pattern, **vars(self.refine))
                out[i], masks[i], swaps[i] = r.weight, r.pruned, r.swaps
        sample = stats.token_sample() if stats is not None else None
        for name, w0, w, mask, n in zip(names, weights, out, masks, swaps, strict=True):
            self.masks.record(name, mask, pattern)
            err = relative_error(w0, w, sample) if sample is not None else None
            self.results.append(ModuleResult(name, err, result.info.get("damping"), n))
        for name, score in zip(names, result.scores or [], strict=False):
            self.scores[name] = score
        for text in result.warnings:
            self.warn(f"{', '.join(names)}: {text}")
        return out
