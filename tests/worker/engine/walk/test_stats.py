"""Streaming input statistics equal the papers' running updates and a direct computation."""

from __future__ import annotations

import math

import torch

from tests.worker.engine.support import stats_from
from worker.engine.walk.stats import SAMPLE_TOKENS, InputStats, relative_error


def batches(seed: int = 0, sizes=(3, 2, 4), seqlen: int = 16, cols: int = 24):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, seqlen, cols, generator=g) * 2 + 0.5 for b in sizes]


def wanda_reference_scaler(xs: list[torch.Tensor]) -> torch.Tensor:
    """WrappedGPT.add_batch of locuslab/wanda: a running mean over sequences of ||X_j||^2."""
    scaler, nsamples = torch.zeros(xs[0].shape[-1]), 0
    for x in xs:
        tmp = x.shape[0]
        inp = x.reshape(-1, x.shape[-1]).t().float()
        scaler *= nsamples / (nsamples + tmp)
        nsamples += tmp
        scaler += torch.norm(inp, p=2, dim=1) ** 2 / nsamples
    return scaler


def sparsegpt_reference_hessian(xs: list[torch.Tensor]) -> torch.Tensor:
    """SparseGPT.add_batch of IST-DASLab/sparsegpt: H = 2/n sum X X^T, updated in place."""
    cols = xs[0].shape[-1]
    H, nsamples = torch.zeros(cols, cols), 0
    for x in xs:
        tmp = x.shape[0]
        inp = x.reshape(-1, cols).t().float()
        H *= nsamples / (nsamples + tmp)
        nsamples += tmp
        inp = math.sqrt(2 / nsamples) * inp
        H += inp.matmul(inp.t())
    return H


def test_column_norms_equal_wanda_running_mean_and_direct_sum():
    xs = batches()
    stats = stats_from(xs, want_hessian=False)
    tokens = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])  # (all tokens, in)
    direct = torch.linalg.vector_norm(tokens, dim=0) ** 2 / sum(x.shape[0] for x in xs)
    torch.testing.assert_close(stats.col_norm_sq, direct, rtol=1e-5, atol=0)
    torch.testing.assert_close(stats.col_norm_sq, wanda_reference_scaler(xs), rtol=1e-5, atol=0)
    assert stats.xtx is None  # no Hessian unless asked for


def test_hessian_equals_sparsegpt_running_update_and_direct_sum():
    xs = batches(seed=1)
    stats = stats_from(xs)
    tokens = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
    direct = 2 / sum(x.shape[0] for x in xs) * tokens.t() @ tokens
    torch.testing.assert_close(stats.hessian, direct, rtol=1e-5, atol=1e-4)
    ref = sparsegpt_reference_hessian(xs)
    torch.testing.assert_close(stats.hessian, ref, rtol=1e-5, atol=1e-4)
    assert stats.hessian.dtype == torch.float32


def test_low_precision_inputs_accumulate_in_fp32():
    xs = [x.to(torch.bfloat16) for x in batches(seed=2)]
    stats = stats_from(xs)
    tokens = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs]).float()
    assert stats.col_norm_sq.dtype == torch.float32 and stats.hessian.dtype == torch.float32
    direct = torch.linalg.vector_norm(tokens, dim=0) ** 2 / sum(x.shape[0] for x in xs)
    torch.testing.assert_close(stats.col_norm_sq, direct, rtol=1e-5, atol=0)


def test_token_sample_holds_real_input_rows():
    xs = batches(seed=3, sizes=(8, 8, 8), seqlen=64)
    stats = stats_from(xs)
    sample = stats.token_sample()
    tokens = torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
    assert 0 < sample.shape[0] <= SAMPLE_TOKENS and sample.shape[1] == tokens.shape[1]
    assert (sample[:, None, :] == tokens[None]).all(dim=2).any(dim=1).all()
    assert InputStats(False, 10).stride == 1


def test_relative_error():
    g = torch.Generator().manual_seed(4)
    w, x = torch.randn(6, 10, generator=g), torch.randn(50, 10, generator=g)
    assert relative_error(w, w.clone(), x) == 0.0
    assert abs(relative_error(w, torch.zeros_like(w), x) - 1.0) < 1e-6
    w2 = w.clone()
    w2[:, 3] = 0
    direct = ((x[:, 3:4] @ w[:, 3:4].t()) ** 2).sum() / ((x @ w.t()) ** 2).sum()
    assert abs(relative_error(w, w2, x) - direct.item()) < 1e-5
