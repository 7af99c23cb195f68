"""Wanda: score |W_ij| * ||X_j|| from streamed statistics; lowest per row (stable) or N of M."""

from __future__ import annotations

import pytest
import torch

from tests.worker.engine.support import (
    pattern,
    reference_n_of_m,
    stable_lowest_per_row,
    stats_from,
    zeros_per_group,
)
from worker.engine.methods.wanda.options import WandaOptions
from worker.engine.methods.wanda.prune import wanda, wanda_score

OPTS = WandaOptions()


def inputs(seed: int = 0, cols: int = 40):
    g = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(cols, generator=g))  # features of different magnitude
    xs = [torch.randn(b, 8, cols, generator=g) * scale for b in (2, 3, 1)]
    return xs, torch.cat([x.reshape(-1, cols) for x in xs]), sum(x.shape[0] for x in xs)


def weight(rows: int, cols: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g)


def test_score_equals_abs_w_times_column_norm_computed_directly():
    xs, tokens, nseq = inputs()
    w = weight(12, 40)
    stats = stats_from(xs, want_hessian=False)
    direct = w.abs() * torch.linalg.vector_norm(tokens, dim=0).reshape(1, -1)
    # s_j is a mean over sequences: the score is |W| ||X_j|| / sqrt(nsequences)
    torch.testing.assert_close(wanda_score(w, stats.col_norm_sq), direct / nseq**0.5)


@pytest.mark.parametrize("ratio", [0.5, 0.37, 0.9])
def test_unstructured_mask_equals_stable_sort_per_row(ratio):
    xs, tokens, _ = inputs(seed=2)
    w = weight(16, 40, seed=3)
    [out] = wanda([w], stats_from(xs, want_hessian=False), pattern(ratio), OPTS).weights
    score = w.abs() * torch.linalg.vector_norm(tokens, dim=0)
    k = int(40 * ratio)
    assert torch.equal(out == 0, stable_lowest_per_row(score, k))
    assert ((out == 0).sum(dim=1) == k).all()
    assert torch.equal(out[out != 0], w[out != 0])  # kept weights unchanged


def test_ties_go_to_the_lower_column():
    xs = [torch.ones(2, 4, 10)]  # equal column norms
    w = torch.tensor([[1.0, -2, 1, 2, 1, -1, 3, 1, 2, 1]] * 3)
    [out] = wanda([w], stats_from(xs, want_hessian=False), pattern(0.3), OPTS).weights
    zero_cols = (out[0] == 0).nonzero().flatten().tolist()
    assert zero_cols == [0, 2, 4]  # of the six |W| == 1 columns, the three lowest indices


@pytest.mark.parametrize("nm", ["2:4", "4:8", "3:7"])
def test_n_of_m_exact_groups(nm):
    xs, tokens, _ = inputs(seed=4, cols=42)
    w = weight(10, 42, seed=5)
    sp = pattern(nm)
    [out] = wanda([w], stats_from(xs, want_hessian=False), sp, OPTS).weights
    score = w.abs() * torch.linalg.vector_norm(tokens, dim=0)
    assert torch.equal(out == 0, reference_n_of_m(score, sp.n, sp.m))
    assert (zeros_per_group(out, sp.m) == sp.n).all()


def test_weights_sharing_one_input_are_pruned_each_by_its_own_rows():
    xs, _, _ = inputs(seed=6)
    stats = stats_from(xs, want_hessian=False)
    w1, w2 = weight(8, 40, seed=7), weight(5, 40, seed=8)
    together = wanda([w1, w2], stats, pattern(0.5), OPTS).weights
    alone = [wanda([w], stats, pattern(0.5), OPTS).weights[0] for w in (w1, w2)]
    assert all(torch.equal(a, b) for a, b in zip(together, alone, strict=True))
    assert [t.shape for t in together] == [w1.shape, w2.shape]


def test_activation_outliers_protect_small_weights():
    xs = [torch.randn(4, 8, 6)]
    xs[0][..., 0] *= 1000  # column 0 carries huge activations
    w = torch.tensor([[0.01, 1.0, 1.1, 1.2, 1.3, 1.4]])
    [out] = wanda([w], stats_from(xs, want_hessian=False), pattern(0.5), OPTS).weights
    assert out[0, 0] != 0  # magnitude alone would prune it first
    assert (out == 0).sum() == 3
