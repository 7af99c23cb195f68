"""Mask selectors against stable-sort references: per row, per matrix, N of every M."""

from __future__ import annotations

import pytest
import torch

from tests.worker.engine.support import reference_n_of_m, stable_lowest_per_row
from worker.engine.prune.masks import (
    check_n_of_m,
    lowest_k,
    lowest_per_matrix,
    lowest_per_row,
    n_of_m,
)


def ties(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Scores drawn from only 5 values, so ties at the threshold are everywhere."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (rows, cols), generator=g).float()


def continuous(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, cols, generator=g)


@pytest.mark.parametrize("k", [0, 1, 7, 19, 20])
@pytest.mark.parametrize("make", [ties, continuous])
def test_lowest_per_row_equals_stable_sort(make, k):
    score = make(12, 20)
    mask = lowest_per_row(score, k)
    assert torch.equal(mask, stable_lowest_per_row(score, k))
    assert (mask.sum(dim=1) == k).all()


def test_lowest_k_along_other_dims_equals_stable_sort():
    score = ties(6, 5, seed=3).reshape(2, 3, 5).transpose(1, 2)  # (2, 5, 3), along dim 1
    mask = lowest_k(score, 2, dim=1)
    ref = torch.stack([stable_lowest_per_row(s.t(), 2).t() for s in score])
    assert torch.equal(mask, ref)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.73])
@pytest.mark.parametrize("make", [ties, continuous])
def test_lowest_per_matrix_equals_reference_threshold(make, ratio):
    score = make(16, 24, seed=1)
    thresh = torch.sort(score.flatten())[0][int(score.numel() * ratio)]
    assert torch.equal(lowest_per_matrix(score, ratio), score <= thresh)


def test_lowest_per_matrix_uses_one_threshold_for_the_whole_matrix():
    score = continuous(8, 10)
    score[:4] += 10  # the top half of the rows scores higher than every bottom row
    mask = lowest_per_matrix(score, 0.4)
    assert not mask[:4].any() and mask[4:].sum() == 33  # int(80 * 0.4) + 1 at the threshold


@pytest.mark.parametrize(("n", "m", "cols"), [(2, 4, 32), (4, 8, 32), (3, 7, 35), (3, 7, 38)])
@pytest.mark.parametrize("make", [ties, continuous])
def test_n_of_m_exact_groups(make, n, m, cols):
    score = make(10, cols, seed=2)
    mask = n_of_m(score, n, m)
    assert torch.equal(mask, reference_n_of_m(score, n, m))
    full = cols - cols % m
    per_group = mask[:, :full].reshape(10, full // m, m).sum(dim=2)
    assert (per_group == n).all()
    if full < cols:  # a tail narrower than m loses min(n, width)
        assert (mask[:, full:].sum(dim=1) == min(n, cols - full)).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 3)])
def test_n_of_m_mixed_ties_and_nan_fall_as_topk(n, m):
    """Groups of distinct scores beside groups with ties, zeros of both signs, inf and NaN:
    every group picked exactly as the reference's topk picks it."""
    score = continuous(16, 8 * m, seed=4)
    score[::3] = ties(6, 8 * m, seed=5)  # whole rows of ties
    score[1, :m] = 0.5  # one group all equal
    score[2, 0], score[2, 1] = 0.0, -0.0
    score[4, m] = float("nan")
    score[5, :2] = float("nan")
    score[7, 2 * m] = float("inf")
    score[8, m + 1] = -float("inf")
    assert torch.equal(n_of_m(score, n, m), reference_n_of_m(score, n, m))


def test_n_of_m_tail_narrower_than_n():
    score = continuous(4, 9)  # 3:7 leaves a tail of 2 columns
    mask = n_of_m(score, 3, 7)
    assert mask[:, 7:].all()
    assert (mask[:, :7].sum(dim=1) == 3).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (3, 7)])
def test_check_n_of_m(n, m):
    w = continuous(6, 4 * m) + 0.1
    assert not check_n_of_m(torch.zeros_like(w, dtype=torch.bool), n, m)
    mask = n_of_m(w, n, m)
    assert check_n_of_m(mask, n, m)
    mask[3, m : 2 * m] = False  # group 1 of row 3 keeps everything
    assert not check_n_of_m(mask, n, m)


def test_check_n_of_m_counts_complete_groups_only():
    assert not check_n_of_m(torch.ones(4, 3, dtype=torch.bool), 2, 4)  # no complete group
    assert not check_n_of_m(torch.ones(4, 1, dtype=torch.bool), 1, 1_000_000)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, :2] = True  # the one complete group of 4 has 2 pruned; the tail is not counted
    assert check_n_of_m(mask, 2, 4)
