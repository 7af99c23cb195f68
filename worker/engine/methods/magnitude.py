"""Magnitude pruning: score |W|; one threshold per matrix (or per row), or n of every m."""

from __future__ import annotations

import torch

from service.schemas import MethodOptions, Sparsity
from worker.engine.masks import lowest_per_matrix, lowest_per_row, n_of_m
from worker.engine.methods.base import MethodResult
from worker.engine.stats import InputStats


def magnitude_mask(w: torch.Tensor, sparsity: Sparsity, scope: str = "matrix") -> torch.Tensor:
    score = w.abs()
    if sparsity.is_nm:
        return n_of_m(score, sparsity.n, sparsity.m)
    if scope == "row":
        return lowest_per_row(score, int(w.shape[1] * sparsity.ratio))
    return lowest_per_matrix(score, sparsity.ratio)


def magnitude(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    sparsity: Sparsity,
    options: MethodOptions,
) -> MethodResult:
    """Zero the smallest |W|; needs no calibration data."""
    out = []
    for w in weights:
        mask = magnitude_mask(w, sparsity, options.magnitude_scope)
        out.append(w.masked_fill(mask, 0))
    return MethodResult(out)
