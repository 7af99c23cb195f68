"""Static Model Pruning (Li et al., ACL 2023), one-shot part: the mask of an init method and
the scores the training engine then learns (weights stay frozen, see task.py).

Initial scores S0 reproduce the init method's mask exactly under the SMP selector (lowest
per row, or n lowest of every m): S0 is the per-row rank of the Wanda score (|W| without
statistics) in [0, 1), which already gives Wanda's mask; when the init mask is not that
order's (SparseGPT), kept weights are lifted by 0.5 so the selector picks the init mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.methods.base import MethodResult
from worker.engine.methods.registry import METHODS, get_method
from worker.engine.methods.wanda.prune import wanda_score
from worker.engine.prune.masks import Pattern, lowest_k, lowest_per_row, n_of_m
from worker.engine.walk.stats import InputStats

if TYPE_CHECKING:
    from worker.engine.methods.smp.options import SMPOptions


def select(pattern: Pattern, scope: str = "row"):
    """The SMP mask of scores S (out, in): the lowest per row or over the whole matrix
    (`scope`), or the n lowest of every m."""

    def pruned(scores: torch.Tensor) -> torch.Tensor:
        if pattern.is_nm:
            return n_of_m(scores, pattern.n, pattern.m)
        if scope == "matrix":
            return lowest_k(scores.flatten(), int(scores.numel() * pattern.ratio)).view_as(scores)
        return lowest_per_row(scores, int(scores.shape[1] * pattern.ratio))

    return pruned


def row_rank(score: torch.Tensor) -> torch.Tensor:
    """Per-row rank / width in [0, 1), ties to the lower column (a stable sort)."""
    order = torch.sort(score, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(score.shape[1]).expand_as(order).contiguous())
    return ranks.float() / score.shape[1]


def initial_scores(
    w: torch.Tensor, pruned: torch.Tensor, stats: InputStats | None, pattern: Pattern
) -> torch.Tensor:
    base = wanda_score(w, stats.col_norm_sq) if stats is not None else w.abs().float()
    rank = row_rank(base)
    if torch.equal(select(pattern)(rank), pruned):
        return rank
    return 0.5 * (~pruned).float() + 0.5 * rank


def smp(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    pattern: Pattern,
    options: SMPOptions,
) -> MethodResult:
    """The init method's mask on the unchanged weights, and the scores to learn from."""
    init = get_method(options.init_method)
    assert init.fn is not None, "smp starts from a one-shot method's mask"
    base = init.fn(weights, stats, pattern, METHODS[options.init_method]())
    out = [w.masked_fill(m, 0) for w, m in zip(weights, base.masks, strict=True)]
    scores = [
        initial_scores(w, m, stats, pattern) for w, m in zip(weights, base.masks, strict=True)
    ]
    return MethodResult(out, base.masks, base.warnings, base.info, scores=scores)
