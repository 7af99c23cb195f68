"""Wanda (Sun et al., 2023): score |W_ij| * ||X_j||, pruned per output row or n of every m."""

from __future__ import annotations

import torch

from service.schemas import MethodOptions, Sparsity
from worker.engine.masks import lowest_per_row, n_of_m
from worker.engine.methods.base import MethodResult
from worker.engine.stats import InputStats


def wanda_score(w: torch.Tensor, col_norm_sq: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(s_j), s_j = mean over sequences of ||X_j||^2; fp32."""
    return w.abs().float() * torch.sqrt(col_norm_sq.float()).reshape(1, -1)


def wanda(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    sparsity: Sparsity,
    options: MethodOptions,
) -> MethodResult:
    """Prune the lowest-scoring weights of every row; kept weights are unchanged."""
    s = stats.col_norm_sq
    out = []
    for w in weights:
        score = wanda_score(w, s)
        if sparsity.is_nm:
            mask = n_of_m(score, sparsity.n, sparsity.m)
        else:
            mask = lowest_per_row(score, int(w.shape[1] * sparsity.ratio))
        out.append(w.masked_fill(mask, 0))
    return MethodResult(out)
