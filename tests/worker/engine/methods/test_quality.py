"""On a Linear with correlated inputs, output reconstruction error orders the methods:
SparseGPT < Wanda < magnitude at the same sparsity.
"""

from __future__ import annotations

import pytest
import torch

from service.methods import METHODS
from tests.worker.engine.support import correlated_inputs, pattern, stats_from
from worker.engine.methods import REGISTRY


def reconstruction_error(w: torch.Tensor, w_pruned: torch.Tensor, x: torch.Tensor) -> float:
    """||(W - W') X|| / ||W X|| over the tokens x: (tokens, in)."""
    return (torch.linalg.norm(x @ (w - w_pruned).t()) / torch.linalg.norm(x @ w.t())).item()


@pytest.mark.parametrize("sp", ["0.5", "2:4"])
def test_sparsegpt_beats_wanda_beats_magnitude(sp):
    cols, nseq, seqlen = 96, 8, 64
    x = correlated_inputs(nseq * seqlen, cols, seed=11)
    w = torch.randn(48, cols, generator=torch.Generator().manual_seed(12))
    stats = stats_from([x.reshape(nseq, seqlen, cols)])
    err = {}
    for name, method in REGISTRY.items():
        if method.fn is None or METHODS[name].RECOVERS:  # movement, gmp: they prune only
            continue  # while training; pattern_lock keeps the input's zeros
        [pruned] = method.fn([w], stats, pattern(sp), METHODS[name]()).weights
        assert abs((pruned == 0).float().mean().item() - 0.5) < 0.02
        err[name] = reconstruction_error(w, pruned, x)
    assert err["sparsegpt"] < err["wanda"] < err["magnitude"], err
