"""Magnitude pruning: score |W|; one threshold per matrix (or per row), or n of every m."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.base import Method, MethodResult
from worker.engine.prune.masks import Pattern, lowest_per_matrix, lowest_per_row, n_of_m
from worker.engine.walk.stats import InputStats

if TYPE_CHECKING:
    from worker.engine.methods.magnitude.options import MagnitudeOptions


def magnitude_mask(w: torch.Tensor, pattern: Pattern, scope: str = "matrix") -> torch.Tensor:
    score = w.abs()
    if pattern.is_nm:
        return n_of_m(score, pattern.n, pattern.m)
    if scope == "row":
        return lowest_per_row(score, int(w.shape[1] * pattern.ratio))
    return lowest_per_matrix(score, pattern.ratio)


def magnitude(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    pattern: Pattern,
    options: MagnitudeOptions,
) -> MethodResult:
    """Zero the smallest |W|; needs no calibration data."""
    masks = [magnitude_mask(w, pattern, options.magnitude_scope) for w in weights]
    return MethodResult([w.masked_fill(m, 0) for w, m in zip(weights, masks, strict=True)], masks)


METHOD = Method(magnitude)
