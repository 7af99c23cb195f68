"""Wanda (Sun et al., 2023): score |W_ij| * ||X_j||, pruned per output row or n of every m."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.base import Method, MethodResult
from worker.engine.prune.masks import Pattern, lowest_per_row, n_of_m
from worker.engine.walk.stats import InputStats

if TYPE_CHECKING:
    from worker.engine.methods.wanda.options import WandaOptions


def wanda_score(w: torch.Tensor, col_norm_sq: torch.Tensor) -> torch.Tensor:
    """|W| * sqrt(s_j), s_j = mean over sequences of ||X_j||^2; fp32."""
    return w.abs().float().mul_(torch.sqrt(col_norm_sq.float()).reshape(1, -1))


def wanda_mask(score: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    if pattern.is_nm:
        return n_of_m(score, pattern.n, pattern.m)
    return lowest_per_row(score, int(score.shape[1] * pattern.ratio))


def wanda(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    pattern: Pattern,
    options: WandaOptions,
) -> MethodResult:
    """Prune the lowest-scoring weights of every row; kept weights are unchanged."""
    assert stats is not None, "wanda needs the walk's norms (its options' STATISTICS)"
    masks = [wanda_mask(wanda_score(w, stats.col_norm_sq), pattern) for w in weights]
    return MethodResult([w.masked_fill(m, 0) for w, m in zip(weights, masks, strict=True)], masks)


METHOD = Method(wanda)
