"""SparseGPT against the reference `fasterprune`, and its numerics: sparsity 0, stacked
weights sharing one Hessian, dead columns, raised damping, a Hessian that never factors.
"""

from __future__ import annotations

import pytest
import torch

from tests.worker.engine.support import correlated_inputs, pattern, stats_from, zeros_per_group
from worker.engine.errors import PruningError
from worker.engine.methods.sparsegpt.options import SparseGPTOptions
from worker.engine.methods.sparsegpt.prune import sparsegpt
from worker.engine.prune.masks import Pattern
from worker.engine.walk.stats import InputStats

OPTS = SparseGPTOptions()


def problem(rows: int = 24, cols: int = 200, seed: int = 0):
    """A weight and InputStats over correlated inputs (6 sequences of 64 tokens)."""
    x = correlated_inputs(6 * 64, cols, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    w = torch.randn(rows, cols, generator=g)
    return w, stats_from([x.reshape(6, 64, cols)])


def with_hessian(H: torch.Tensor) -> InputStats:
    """InputStats whose `hessian` is exactly H (one sequence: H = 2 * xtx)."""
    stats = InputStats(True, 1, seqlen=1)
    stats._xtx_upper, stats.tokens = torch.triu(H) / 2, 1
    return stats


def reference_fasterprune(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    """SparseGPT.fasterprune of IST-DASLab/sparsegpt, transcribed (Losses dropped)."""
    W, H = W.clone().float(), H.clone()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1**2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
            mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = (
                    W1[:, i : (i + prunem)] ** 2
                    / (torch.diag(Hinv1)[i : (i + prunem)].reshape((1, -1))) ** 2
                )
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


@pytest.mark.parametrize("sp", ["0.5", "2:4", "4:8"])
def test_equals_reference_fasterprune(sp):
    w, stats = problem()  # 200 columns: one full block of 128 and a tail block of 72
    sparsity = pattern(sp)
    result = sparsegpt([w], stats, sparsity, OPTS)
    [out] = result.weights
    ref = reference_fasterprune(w, stats.hessian, sparsity.ratio, sparsity.n, sparsity.m)
    assert torch.equal(out == 0, ref == 0)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert result.info["damping"] == OPTS.percdamp


@pytest.mark.parametrize("nm", ["2:4", "4:8", "3:7"])
def test_n_of_m_exact_groups(nm):
    w, stats = problem(rows=10, cols=140, seed=1)  # 3:7 -> blocks of 126, groups never split
    sp = pattern(nm)
    [out] = sparsegpt([w], stats, sp, OPTS).weights
    assert (zeros_per_group(out, sp.m) == sp.n).all()


@pytest.mark.parametrize("ratio", [0.5, 0.6])
def test_unstructured_per_block_counts(ratio):
    w, stats = problem(rows=16, cols=256, seed=2)
    [out] = sparsegpt([w], stats, pattern(ratio), OPTS).weights
    for b in range(2):  # the reference prunes int(numel * ratio) + 1 per 128-column block
        block = out[:, b * 128 : (b + 1) * 128]
        assert (block == 0).sum().item() == int(block.numel() * ratio) + 1


def test_sparsity_zero_leaves_weights_unchanged():
    w, stats = problem(seed=3)
    [out] = sparsegpt([w], stats, Pattern(ratio=0.0), OPTS).weights
    torch.testing.assert_close(out, w, rtol=0, atol=1e-6)


@pytest.mark.parametrize("sp", ["2:4", "3:7", "0.5"])
def test_stacked_weights_equal_pruning_each_alone(sp):
    w, stats = problem(rows=30, cols=140, seed=4)
    parts = [w[:8], w[8:20], w[20:]]
    sparsity = pattern(sp)
    together = sparsegpt(parts, stats, sparsity, OPTS).weights
    for part, got in zip(parts, together, strict=True):
        [alone] = sparsegpt([part], stats, sparsity, OPTS).weights
        assert torch.equal(got == 0, alone == 0)
        torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)


def test_dead_input_columns_are_zeroed():
    cols = 32
    x = correlated_inputs(4 * 16, cols, seed=5)
    x[:, [3, 17]] = 0  # these features never fire
    w = torch.randn(8, cols, generator=torch.Generator().manual_seed(5))
    [out] = sparsegpt([w], stats_from([x.reshape(4, 16, cols)]), pattern(0.25), OPTS).weights
    assert torch.isfinite(out).all()
    assert (out[:, [3, 17]] == 0).all()
    assert (out != 0).sum() > 0.5 * out.numel()


def test_failed_cholesky_raises_damping_and_records_it():
    # indefinite at the default damping (-0.05 + 0.01 * mean diag < 0), fine at 10x
    H = torch.diag(torch.tensor([1.0] * 7 + [-0.05]))
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(6))
    result = sparsegpt([w], with_hessian(H), pattern("2:4"), OPTS)
    assert result.info["damping"] > OPTS.percdamp
    assert torch.isfinite(result.weights[0]).all()
    assert (zeros_per_group(result.weights[0], 4) == 2).all()


def test_hessian_that_never_factors_raises_pruning_error():
    H = torch.eye(8)
    H[2, 5] = H[5, 2] = float("nan")
    w = torch.randn(4, 8)
    with pytest.raises(PruningError, match="Cholesky"):
        sparsegpt([w], with_hessian(H), pattern(0.5), OPTS)


def test_keeps_the_dtype_of_each_weight():
    w, stats = problem(rows=8, cols=64, seed=7)
    out = sparsegpt([w.to(torch.bfloat16), w[:3].clone()], stats, pattern(0.5), OPTS)
    assert [t.dtype for t in out.weights] == [torch.bfloat16, torch.float32]
    assert [t.shape for t in out.weights] == [(8, 64), (3, 64)]
