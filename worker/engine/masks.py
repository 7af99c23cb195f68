"""Mask selectors shared by every method: lowest per row, lowest per matrix, N lowest of every M.

A mask is a bool tensor shaped like the scores; True marks a weight to prune.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Pattern:
    """What a mask must satisfy: a share `ratio` of zeros, or n zeros in every m inputs."""

    ratio: float
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.ratio:g}"


def lowest_k(score: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """The k lowest scores along `dim`, exactly as a stable sort would pick them
    (ties at the threshold go to the lower index), via kthvalue instead of a full sort.
    """
    size = score.shape[dim]
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= size:
        return torch.ones_like(score, dtype=torch.bool)
    kth = torch.kthvalue(score, k, dim=dim, keepdim=True).values
    below = score < kth
    tie = score == kth
    room = k - below.sum(dim=dim, keepdim=True)  # ties still to take, lowest index first
    return below | (tie & (tie.cumsum(dim=dim) <= room))


def lowest_per_row(score: torch.Tensor, k: int) -> torch.Tensor:
    """The k lowest scores of each row (ties go to the lower column)."""
    return lowest_k(score, k, dim=1)


def lowest_per_matrix(score: torch.Tensor, ratio: float) -> torch.Tensor:
    """One threshold per matrix, as the reference: prune score <= sorted(score)[int(n*ratio)]."""
    flat = score.flatten()
    k = int(flat.numel() * ratio)
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    k = min(k, flat.numel() - 1)
    thresh = torch.kthvalue(flat, k + 1).values  # == torch.sort(flat)[0][k]
    return score <= thresh


def n_of_m(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The n lowest scores in every group of m consecutive columns, per row.

    As the reference implementations choose them with torch.topk, so ties (common in
    quantized checkpoints) fall exactly as there: a group's n lowest are found by counting,
    for each score, the scores below it; only groups where that is ambiguous (ties, NaN) go
    to topk. A last group narrower than m (width not divisible by m) loses min(n, width).
    """
    rows, cols = score.shape  # (out, in)
    full = cols - cols % m
    if full == cols:
        return _n_lowest_of_columns(score.reshape(-1, m).t(), n).t().reshape(rows, cols)
    mask = torch.zeros_like(score, dtype=torch.bool)
    if full:
        groups = score[:, :full].reshape(-1, m)  # (out * G, m)
        mask[:, :full] = _n_lowest_of_columns(groups.t(), n).t().reshape(rows, full)
    if full < cols:
        mask[:, full:] = lowest_per_row(score[:, full:], min(n, cols - full))
    return mask


def _n_lowest_of_columns(cols: torch.Tensor, n: int) -> torch.Tensor:
    """(m, G) scores, one group per column -> (m, G) mask of each group's n lowest, as
    topk(largest=False) along the group picks them (a (m, G) view of (G, m) groups works)."""
    m, size = cols.shape
    picked = torch.empty_like(cols, dtype=torch.bool)
    count = torch.zeros(size, dtype=torch.uint8, device=cols.device)
    tied = torch.zeros(size, dtype=torch.bool, device=cols.device)
    below = torch.empty_like(count)
    for j in range(m):
        below.zero_()
        for k in range(m):
            if k != j:  # how many of the group score under position j
                below.add_(cols[k] < cols[j])
            if k > j:
                tied.logical_or_(cols[k] == cols[j])
        torch.lt(below, n, out=picked[j])
        count.add_(picked[j])
    # distinct, finite scores: exactly n are below n others; else (ties, NaN) as topk does
    odd = tied.logical_or_(count != n)
    if odd.any():
        at = odd.nonzero().reshape(-1)
        groups = cols[:, at].t().contiguous()  # (K, m)
        idx = torch.topk(groups, n, dim=1, largest=False)[1]
        picked[:, at] = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, idx, True).t()
    return picked


def check_n_of_m(pruned: torch.Tensor, n: int, m: int) -> bool:
    """True when every complete group of m consecutive inputs of every row has >= n pruned
    (`pruned`: a bool mask, True = pruned). Only complete groups count; none at all is False."""
    rows, cols = pruned.shape
    full = cols - cols % m
    if not full or not rows:
        return False
    count = pruned[:, :full].reshape(rows, full // m, m).sum(dim=2)
    return bool((count >= n).all())
