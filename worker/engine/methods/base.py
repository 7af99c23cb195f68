"""What every pruning method takes and returns: (weights, stats, pattern, its options) -> result.

Methods are pure math: they never touch the model, files, devices or the wire contract.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from worker.engine.prune.masks import Pattern
from worker.engine.walk.stats import InputStats


@dataclass
class MethodResult:
    """New weights and their masks (True = pruned), in the order and shapes given; warnings
    for the user; numbers worth reporting."""

    weights: list[torch.Tensor]
    masks: list[torch.Tensor]
    warnings: list[str] = field(default_factory=list)
    info: dict[str, float] = field(default_factory=dict)
    scores: list[torch.Tensor] | None = None  # for methods that go on to learn their mask


# (weights (out, in) sharing one input, stats of that input or None, pattern, options) -> result
MethodFn = Callable[[list[torch.Tensor], InputStats | None, Pattern, Any], MethodResult]


@dataclass(frozen=True)
class Method:
    """A registered method: its function, the statistics the walker must collect and, for
    methods that learn, the training task the engine runs after the walk."""

    fn: MethodFn | None  # None: the method prunes only while training (movement, gmp)
    needs: str | None | Callable[[Any], str | None]  # None, "norms", "hessian" (or per options)
    task: Callable[..., Any] | None = None  # (TaskInputs) -> Task

    def stats_for(self, options: Any) -> str | None:
        return self.needs(options) if callable(self.needs) else self.needs
