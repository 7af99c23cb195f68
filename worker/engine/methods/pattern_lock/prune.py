"""Pattern lock (Prune Once for All's transfer step, Zafrir et al. 2021): the mask of every
Linear is the input checkpoint's own zeros, so fine-tuning (recovery) keeps the sparsity
pattern a pre-trained sparse model already has."""

from __future__ import annotations

from typing import Any

import torch

from worker.engine.errors import PruningError
from worker.engine.methods.base import Method, MethodResult
from worker.engine.prune.masks import Pattern
from worker.engine.walk.stats import InputStats


def pattern_lock(
    weights: list[torch.Tensor], stats: InputStats | None, pattern: Pattern, options: Any
) -> MethodResult:
    """M = (W == 0): the weights stay as they are; a matrix with no zero is not a sparse
    input, and is an error that says how to keep it dense."""
    masks = [w == 0 for w in weights]
    for i, m in enumerate(masks):
        if not m.any():
            raise PruningError(
                f"pattern_lock: matrix {i} of this group has no zero weight, so the input is "
                "not sparse there; keep it dense with `skip` (CLI --skip) or give a pruned "
                "checkpoint"
            )
    return MethodResult(list(weights), masks)


METHOD = Method(pattern_lock)
