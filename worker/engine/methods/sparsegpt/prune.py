"""SparseGPT (Frantar & Alistarh, 2023): prune column by column and update the kept weights
with the inverse Hessian, in blocks of 128 columns with lazy batch updates.

Several Linears that read the same input share H, so they are pruned as one stacked W.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from worker.engine.errors import PruningError
from worker.engine.methods.base import Method, MethodResult
from worker.engine.prune.masks import Pattern, lowest_per_matrix, n_of_m
from worker.engine.walk.stats import InputStats

if TYPE_CHECKING:
    from worker.engine.methods.sparsegpt.options import SparseGPTOptions

DAMP_STEPS = 8  # each failed Cholesky multiplies the damping by 10
CHUNK = 16  # columns updated one by one within a chunk; the block's later columns once per chunk


def inverse_cholesky(H: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, float]:
    """Upper Cholesky factor U of (H + lambda I)^-1 (so that Hinv = U^T U), lambda =
    percdamp * mean(diag H). Raises the damping tenfold until the factorization succeeds and
    returns the percdamp that worked; never falls back silently.

    With J the exchange matrix and J H J = L L^T, U = J L^-1 J: one Cholesky and one
    triangular inverse instead of the reference's Cholesky, cholesky_inverse, Cholesky.
    Only H's upper triangle is read (the lower one of the flipped H), so H may hold anything
    below its diagonal.
    """
    eye = torch.eye(H.shape[0], device=H.device, dtype=H.dtype)
    mean_diag = torch.mean(torch.diag(H))
    flipped = H.flip(0, 1)
    for step in range(DAMP_STEPS):
        p = percdamp * 10**step
        L, info = torch.linalg.cholesky_ex(flipped + p * mean_diag * eye)
        if info.item() != 0:
            continue
        U = torch.linalg.solve_triangular(L, eye, upper=False).flip(0, 1)
        if torch.isfinite(U.abs().amax()):  # NaN propagates through amax; no bool copy
            return U, p
    raise PruningError(
        f"SparseGPT: Cholesky of the Hessian failed even with damping {p:g} x mean(diag H); "
        "the calibration inputs may be degenerate (try more samples or a larger percdamp)"
    )


def _block_mask(W1: torch.Tensor, d: torch.Tensor, ratio: float, segments: list[tuple[int, int]]):
    """Unstructured mask of one (B, rows) block from W^2 / diag(Hinv)^2, with one threshold
    per stacked matrix (its rows a:b)."""
    score = W1.square() / d.square()
    mask = torch.zeros_like(W1, dtype=torch.bool)
    for a, b in segments:
        mask[:, a:b] = lowest_per_matrix(score[:, a:b], ratio)
    return mask


def sparsegpt(
    weights: list[torch.Tensor],
    stats: InputStats | None,
    pattern: Pattern,
    options: SparseGPTOptions,
) -> MethodResult:
    """Prune `weights` (each (out, in), sharing one input) and update what is kept.

    Works on W transposed, (in, rows), so each column step touches contiguous memory.
    """
    assert stats is not None, "sparsegpt needs the walk's Hessians (its options' STATISTICS)"
    H = stats.hessian_upper  # (in, in) fp32, upper triangle; a new tensor: changed below
    WT = torch.cat([w.float() for w in weights], dim=0).t().contiguous()  # (in, rows)
    bounds = torch.tensor([0] + [w.shape[0] for w in weights]).cumsum(0).tolist()
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))
    cols = WT.shape[0]
    pruned = torch.zeros_like(WT, dtype=torch.bool)  # (in, rows): the mask, True = pruned

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    WT[dead, :] = 0
    Hinv, damp = inverse_cholesky(H, options.percdamp)

    n, m = pattern.n, pattern.m
    bs = options.blocksize
    if pattern.is_nm:
        bs = max(m, bs - bs % m)  # N:M groups must not straddle blocks, nor chunks
    chunk = max(m, CHUNK - CHUNK % m) if pattern.is_nm else CHUNK
    for i1 in range(0, cols, bs):
        i2 = min(i1 + bs, cols)
        W1 = WT[i1:i2].clone()  # (B, rows)
        Err1 = torch.empty_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1).reshape(-1, 1)  # (B, 1)
        if pattern.is_nm:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
            scale = torch.zeros_like(W1)
            d2, sq = d.square(), torch.empty_like(W1[:m])
        else:
            mask1 = _block_mask(W1, d, pattern.ratio, segments)
            scale = mask1 / d  # err = w * mask / d
        for c1 in range(0, i2 - i1, chunk):  # the block's columns in chunks, lazily as blocks
            c2 = min(c1 + chunk, i2 - i1)
            for i in range(c1, c2):
                if pattern.is_nm and i % m == 0:  # (m, rows) scores, one group per row
                    w = min(m, i2 - i1 - i)  # a last group narrower than m: its min(n, w) lowest
                    g = torch.square(W1[i : i + w], out=sq[:w]).div_(d2[i : i + w])
                    if w == m:  # topk per group, as n_of_m picks
                        idx = torch.topk(g.t(), n, dim=1, largest=False)[1]
                        mask1[i : i + m].t().scatter_(1, idx, True)
                    else:
                        mask1[i : i + w] = n_of_m(g.t(), n, m).t()
                    torch.div(mask1[i : i + w], d[i : i + w], out=scale[i : i + w])
                torch.mul(W1[i], scale[i], out=Err1[i])
                if i + 1 < c2:  # column i ends at 0 if pruned (masked below), else unchanged
                    W1[i + 1 : c2].addr_(Hinv1[i, i + 1 : c2], Err1[i], alpha=-1)
            if c2 < i2 - i1:  # the chunk's errors reach the rest of the block in one product
                W1[c2:].addmm_(Hinv1[c1:c2, c2:].t(), Err1[c1:c2], alpha=-1)
        WT[i1:i2] = W1.masked_fill_(mask1, 0)  # the update left ~0 there; make it exact
        pruned[i1:i2] = mask1
        WT[i2:].addmm_(Hinv[i1:i2, i2:].t(), Err1, alpha=-1)

    W, M = WT.t(), pruned.t()
    out = [W[a:b].to(w.dtype) for (a, b), w in zip(segments, weights, strict=True)]
    masks = [M[a:b].contiguous() for a, b in segments]
    warnings = []
    if damp > options.percdamp:
        warnings.append(f"SparseGPT damping raised to {damp:g} (asked {options.percdamp:g})")
    return MethodResult(out, masks, warnings, {"damping": damp})


METHOD = Method(sparsegpt)
