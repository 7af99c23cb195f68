"""DSnoT (Zhang et al., ICLR 2024): training-free refinement of a one-shot mask.

For output row r the expected reconstruction error is e_r = sum_j (W_rj - W'_rj) E[x_j]
(W dense, W' the pruned weights; for Wanda W' = W on kept weights, SparseGPT changed them).
Each round, every row still active swaps one pruned weight back in and one kept weight out:
- grow: the pruned weight whose restored contribution W_rj E[x_j] most cancels e_r, ranked by
  that contribution over Var[x_j]^var_power (the paper's variance-aware growing criterion);
- prune: for unstructured masks, the kept weight with the lowest Wanda score |W'| ||X_j||
  among those whose contribution has the other sign of e_r (they move e_r towards 0 too);
  for N:M, the lowest-scoring kept weight in the grown weight's group of M.
A swap is kept only when it lowers |e_r| (and |e_r| is above `update_threshold`); a row whose
swap is refused stops, as in the reference. No gradient, no weight update: a grown weight
takes its dense value. Each swap keeps the row's count (N:M: the group's), so the achieved
sparsity and pattern are unchanged by construction. At most `max_cycles` rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worker.engine.prune.masks import Pattern
from worker.engine.walk.stats import InputStats

_VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class Refined:
    weight: torch.Tensor  # (out, in), model dtype: W' with the swaps applied
    pruned: torch.Tensor  # (out, in) bool, True = pruned
    swaps: int  # weights regrown (as many were pruned)


def expected_error(dense: torch.Tensor, pruned_w: torch.Tensor, mean: torch.Tensor):
    """Per row: E[(W - W') x] = sum_j (W_rj - W'_rj) E[x_j]; fp32, shape (out,)."""
    return ((dense.float() - pruned_w.float()) * mean.float().reshape(1, -1)).sum(dim=1)


@torch.no_grad()
def dsnot(
    dense: torch.Tensor,
    weight: torch.Tensor,
    pruned: torch.Tensor,
    stats: InputStats,
    pattern: Pattern,
    max_cycles: int = 50,
    update_threshold: float = 0.0,
    var_power: float = 1.0,
) -> Refined:
    """Refine the mask `pruned` of `weight` (the method's output for `dense`) on the input
    statistics `stats`."""
    mean = stats.col_mean.float().reshape(1, -1)
    var = stats.col_var.float().clamp_min(_VAR_FLOOR).reshape(1, -1)
    w, wp = dense.float(), weight.float()
    grow_gain = w * mean  # regrowing j changes e by -grow_gain[j]
    prune_gain = wp * mean  # pruning kept j changes e by +prune_gain[j]
    e = expected_error(w, wp, mean)
    sign = torch.sign(e).reshape(-1, 1)
    rows = torch.arange(w.shape[0], device=w.device)
    mask = pruned.clone()
    # grow candidates, best first: the pruned weights by sign(e) * contribution / Var^p
    key = torch.where(mask, sign * grow_gain / var.pow(var_power), -torch.inf)
    grow = torch.sort(key, dim=1, descending=True, stable=True).indices
    n_grow = mask.sum(dim=1)
    wanda = wp.abs() * torch.sqrt(stats.col_norm_sq.float()).reshape(1, -1)
    if pattern.is_nm:
        prune_key = torch.where(mask, torch.inf, wanda)  # pruned weights cannot be pruned again
    else:
        # kept weights of the other sign first, each part by Wanda score ascending
        order = torch.sort(torch.where(mask, torch.inf, wanda), dim=1, stable=True).indices
        wrong = ((sign * prune_gain) >= 0) | mask
        prune_order = order.gather(
            1, torch.sort(wrong.gather(1, order).to(torch.uint8), dim=1, stable=True).indices
        )
        n_prune = (~mask).sum(dim=1)
    active = e.abs() > update_threshold
    swaps = 0
    for t in range(min(max_cycles, w.shape[1])):
        if not active.any():
            break
        g = grow[:, t]
        if pattern.is_nm:
            start = g - g % pattern.m
            cols = start.reshape(-1, 1) + torch.arange(pattern.m, device=w.device)
            best = prune_key.gather(1, cols).argmin(dim=1)
            p = cols[rows, best]
            valid = (t < n_grow) & torch.isfinite(prune_key[rows, p])
        else:
            p = prune_order[:, t]
            valid = (t < n_grow) & (t < n_prune)
        e_new = e - grow_gain[rows, g] + prune_gain[rows, p]
        ok = active & valid & (e_new.abs() < e.abs())
        r = rows[ok]
        mask[r, g[ok]] = False
        mask[r, p[ok]] = True
        if pattern.is_nm:
            prune_key[r, p[ok]] = torch.inf
            prune_key[r, g[ok]] = torch.inf  # a regrown weight stays
        e = torch.where(ok, e_new, e)
        swaps += int(ok.sum())
        active = ok & (e.abs() > update_threshold)
    out = torch.where(mask, torch.zeros_like(wp), torch.where(pruned & ~mask, w, wp))
    return Refined(out.to(weight.dtype), mask, swaps)
