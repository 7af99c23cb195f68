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
    """A registered method: its function and, for methods that learn, the training task the
    engine runs after the walk. What the walk must collect for it is its options' fact
    (`Options.statistics()`), read by `stats_for`."""

    fn: MethodFn | None  # None: the method prunes only while training (movement, gmp)
    task: Callable[..., Any] | None = None  # (TaskInputs) -> Task

    @staticmethod
    def stats_for(options: Any) -> str | None:
        """The walker's statistics for a method with these options: None, "norms" or
        "hessian"."""
        return WALK_STATS[options.statistics()]


# the options' statistics fact -> what the walker accumulates
WALK_STATS: dict[str, str | None] = {"none": None, "norms": "norms", "hessians": "hessian"}
