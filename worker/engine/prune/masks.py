"""Mask selectors shared by every method: lowest per row, lowest per matrix, N lowest of every M.

A mask is a bool tensor shaped like the scores; True marks a weight to prune.
"""

from __future__ import annotations

import torch

from service.sparsity import Pattern

# the pattern type lives in the torch-free contract; the engine's modules take it from here
__all__ = ["Pattern", "check_n_of_m", "lowest_k", "lowest_per_matrix", "lowest_per_row", "n_of_m"]


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

    Chosen with torch.topk as the reference implementations do, so ties (common in
    quantized checkpoints) fall exactly as there. A last group narrower than m (width not
    divisible by m) loses min(n, width) weights.
    """
    rows, cols = score.shape  # (out, in)
    full = cols - cols % m
    if full == cols:  # the usual case: the picks are the mask, no copy
        groups = score.reshape(rows, cols // m, m)
        idx = torch.topk(groups, n, dim=2, largest=False)[1]
        return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, idx, True).reshape(rows, cols)
    mask = torch.zeros_like(score, dtype=torch.bool)
    if full:
        groups = score[:, :full].reshape(rows, full // m, m)  # (out, G, m)
        idx = torch.topk(groups, n, dim=2, largest=False)[1]
        picked = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, idx, True)
        mask[:, :full] = picked.reshape(rows, full)
    if full < cols:
        mask[:, full:] = lowest_per_row(score[:, full:], min(n, cols - full))
    return mask


def check_n_of_m(pruned: torch.Tensor, n: int, m: int) -> bool:
    """True when every complete group of m consecutive inputs of every row has >= n pruned
    (`pruned`: a bool mask, True = pruned). Only complete groups count; none at all is False."""
    rows, cols = pruned.shape
    full = cols - cols % m
    if not full or not rows:
        return False
    count = pruned[:, :full].reshape(rows, full // m, m).sum(dim=2)
    return bool((count >= n).all())
