"""What every pruning method takes and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from service.schemas import MethodOptions, Sparsity
from worker.engine.stats import InputStats


@dataclass
class MethodResult:
    """New weights (same order and shapes as given) and numbers worth reporting."""

    weights: list[torch.Tensor]
    info: dict[str, float] = field(default_factory=dict)


# (weights (out, in) sharing one input, stats of that input, sparsity, options) -> result
MethodFn = Callable[[list[torch.Tensor], InputStats | None, Sparsity, MethodOptions], MethodResult]


@dataclass(frozen=True)
class Method:
    """A registered method: its function and the statistics the walker must collect."""

    name: str
    fn: MethodFn
    needs: str | None  # None (no calibration), "norms" or "hessian"
