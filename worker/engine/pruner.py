"""The prune step the walker calls for each group of Linears that share one input: run the
method, record each mask in the mask state, measure the reconstruction error, pass warnings
on as they happen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from service.methods import MagnitudeOptions
from worker.engine.mask_state import MaskState
from worker.engine.masks import Pattern
from worker.engine.methods import Method
from worker.engine.methods.magnitude import magnitude
from worker.engine.stats import InputStats, relative_error


@dataclass(frozen=True)
class ModuleResult:
    """What pruning one module measured (its sparsity and N:M check come from the masks)."""

    name: str
    rel_error: float | None
    damping: float | None


@dataclass
class Pruner:
    method: Method
    pattern: Pattern
    options: Any  # the method's own options model
    masks: MaskState
    warn: Callable[[str], None]  # told at once, as each warning happens
    results: list[ModuleResult] = field(default_factory=list)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # learned-mask methods

    def __call__(
        self, names: list[str], weights: list[torch.Tensor], stats: InputStats | None
    ) -> list[torch.Tensor]:
        if stats is None and self.method.stats_for(self.options) is not None:
            # an expert no calibration token was routed to has no statistics: magnitude
            result = magnitude(weights, None, self.pattern, MagnitudeOptions())
        else:
            result = self.method.fn(weights, stats, self.pattern, self.options)
        sample = stats.token_sample() if stats is not None else None
        for name, w0, w, mask in zip(names, weights, result.weights, result.masks, strict=True):
            self.masks.record(name, mask, self.pattern)
            err = relative_error(w0, w, sample) if sample is not None else None
            self.results.append(ModuleResult(name, err, result.info.get("damping")))
        for name, score in zip(names, result.scores or [], strict=False):
            self.scores[name] = score
        for text in result.warnings:
            self.warn(f"{', '.join(names)}: {text}")
        return result.weights
