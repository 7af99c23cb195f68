"""Magnitude: one threshold per matrix (as the reference), a per-row option, or N of M."""

from __future__ import annotations

import pytest
import torch

from tests.worker.engine.support import (
    pattern,
    reference_n_of_m,
    stable_lowest_per_row,
    zeros_per_group,
)
from worker.engine.methods.magnitude.options import MagnitudeOptions
from worker.engine.methods.magnitude.prune import magnitude


def weight(rows: int = 16, cols: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[:4] *= 0.1  # rows of different scale: per-matrix and per-row masks differ
    return w


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.85])
def test_per_matrix_equals_reference(ratio):
    w = weight()
    [out] = magnitude([w], None, pattern(ratio), MagnitudeOptions()).weights
    thresh = torch.sort(w.abs().flatten())[0][int(w.numel() * ratio)]
    ref = w.abs() <= thresh
    assert torch.equal(out == 0, ref)
    assert torch.equal(out[~ref], w[~ref])


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_per_row_option(ratio):
    w = weight(seed=1)
    opts = MagnitudeOptions(magnitude_scope="row")
    [out] = magnitude([w], None, pattern(ratio), opts).weights
    k = int(w.shape[1] * ratio)
    assert torch.equal(out == 0, stable_lowest_per_row(w.abs(), k))
    assert ((out == 0).sum(dim=1) == k).all()
    [per_matrix] = magnitude([w], None, pattern(ratio), MagnitudeOptions()).weights
    assert not torch.equal(per_matrix == 0, out == 0)


@pytest.mark.parametrize("nm", ["2:4", "4:8", "3:7"])
def test_n_of_m_exact_groups(nm):
    w = weight(seed=2, cols=45)
    sp = pattern(nm)
    [out] = magnitude([w], None, sp, MagnitudeOptions()).weights
    assert torch.equal(out == 0, reference_n_of_m(w.abs(), sp.n, sp.m))
    assert (zeros_per_group(out, sp.m) == sp.n).all()


def test_each_weight_has_its_own_threshold():
    w1, w2 = weight(seed=3), weight(seed=4) * 100
    out = magnitude([w1, w2], None, pattern(0.5), MagnitudeOptions()).weights
    for o in out:  # a shared threshold would prune nearly all of w1 and none of w2
        assert abs((o == 0).float().mean().item() - 0.5) < 0.01
