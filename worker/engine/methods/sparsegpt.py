"""SparseGPT (Frantar & Alistarh, 2023): prune column by column and update the kept weights
with the inverse Hessian, in blocks of 128 columns with lazy batch updates.

Several Linears that read the same input share H, so they are pruned as one stacked W.
"""

from __future__ import annotations

import torch

from service.schemas import MethodOptions, Sparsity
from worker.engine.errors import PruningError
from worker.engine.masks import lowest_per_matrix, lowest_per_row
from worker.engine.methods.base import MethodResult
from worker.engine.stats import InputStats

DAMP_STEPS = 8  # each failed Cholesky multiplies the damping by 10


def inverse_cholesky(H: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor of (H + lambda I)^-1, lambda = percdamp * mean(diag H).

    Raises the damping tenfold until the factorization succeeds; returns it with the
    percdamp that worked. Never falls back silently.
    """
    eye = torch.eye(H.shape[0], device=H.device, dtype=H.dtype)
    mean_diag = torch.mean(torch.diag(H))
    for step in range(DAMP_STEPS):
        p = percdamp * 10**step
        L, info = torch.linalg.cholesky_ex(H + p * mean_diag * eye)
        if info.item() != 0:
            continue
        Hinv = torch.cholesky_inverse(L)
        U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
        if info.item() == 0 and torch.isfinite(U).all():
            return U, p
    raise PruningError(
        f"SparseGPT: Cholesky of the Hessian failed even with damping {p:g} x mean(diag H); "
        "the calibration inputs may be degenerate (try more samples or a larger percdamp)"
    )


def _block_mask(W1: torch.Tensor, d: torch.Tensor, ratio: float, segments: list[tuple[int, int]]):
    """Unstructured mask of one block from W^2 / diag(Hinv)^2, one threshold per matrix."""
    score = W1.square() / d.reshape(1, -1).square()
    mask = torch.zeros_like(W1, dtype=torch.bool)
    for a, b in segments:
        mask[a:b] = lowest_per_matrix(score[a:b], ratio)
    return mask


def sparsegpt(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    sparsity: Sparsity,
    options: MethodOptions,
) -> MethodResult:
    """Prune `weights` (each (out, in), sharing one input) and update what is kept."""
    H = stats.hessian.clone()  # (in, in) fp32
    W = torch.cat([w.float() for w in weights], dim=0)  # (rows, in)
    bounds = torch.tensor([0] + [w.shape[0] for w in weights]).cumsum(0).tolist()
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    cols = W.shape[1]

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    Hinv, damp = inverse_cholesky(H, options.percdamp)

    n, m = sparsity.n, sparsity.m
    bs = options.blocksize
    if sparsity.is_nm:
        bs = max(m, bs - bs % m)  # N:M groups must not straddle blocks
    for i1 in range(0, cols, bs):
        i2 = min(i1 + bs, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        if sparsity.is_nm:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            mask1 = _block_mask(W1, d, sparsity.ratio, segments)
        for i in range(i2 - i1):
            if sparsity.is_nm and i % m == 0:
                g = W1[:, i : i + m].square() / d[i : i + m].reshape(1, -1).square()
                mask1[:, i : i + m] = lowest_per_row(g, min(n, g.shape[1]))
            w = W1[:, i]
            q = w.masked_fill(mask1[:, i], 0)
            Q1[:, i] = q
            err1 = (w - q) / d[i]
            W1[:, i:].addr_(err1, Hinv1[i, i:], alpha=-1)
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:].addmm_(Err1, Hinv[i1:i2, i2:], alpha=-1)

    out = [W[a:b].to(w.dtype) for (a, b), w in zip(segments, weights, strict=True)]
    return MethodResult(out, {"damping": damp})
