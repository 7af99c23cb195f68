"""Masked-weight parametrizations: the straight-through estimator passes W * dL/dW' to the
scores; a fixed mask never lets a pruned weight back; baking leaves exact zeros."""

from __future__ import annotations

import torch
from torch import nn

from worker.engine.prune.masks import lowest_per_row
from worker.engine.train.masked import FixedMask, ScoreMask, attach, bake, original


def select_half(scores):
    return lowest_per_row(scores, scores.shape[1] // 2)


def test_straight_through_gradient_of_the_scores_is_w_times_the_masked_weight_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(8, 3, bias=False)
    w = lin.weight.detach().clone()
    scores = torch.rand(3, 8)
    mask = ScoreMask(scores, select_half, transpose=False)
    attach(lin, mask)
    x = torch.randn(5, 8)
    target = torch.randn(5, 3)
    loss = ((lin(x) - target) ** 2).sum()
    loss.backward()
    # by hand: W' = W * keep, dL/dW' = 2 (x W'^T - target)^T x
    keep = (~select_half(scores)).float()
    grad_w_masked = 2 * (x @ (w * keep).t() - target).t() @ x
    assert mask.scores.grad is not None and mask.scores.grad.abs().sum() > 0
    torch.testing.assert_close(mask.scores.grad, grad_w_masked * w)


def test_fixed_mask_keeps_pruned_weights_at_zero_through_training():
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    pruned = lowest_per_row(lin.weight.detach().abs(), 8)
    attach(lin, FixedMask(pruned, transpose=False))
    opt = torch.optim.AdamW([original(lin)], lr=0.1, weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        lin(torch.randn(4, 16)).square().sum().backward()
        opt.step()
        assert (lin.weight[pruned] == 0).all()
    before = original(lin).detach().clone()
    bake(lin, pruned)
    assert not hasattr(lin, "parametrizations")
    assert torch.equal(lin.weight[pruned], torch.zeros(int(pruned.sum())))
    assert torch.equal(lin.weight[~pruned], before[~pruned])
    assert not torch.signbit(lin.weight[pruned]).any()  # +0, not -0


def test_transposed_storage_gets_the_transposed_mask():
    w_stored = torch.randn(8, 4)  # Conv1D keeps (in, out); the mask is (out, in)
    pruned = torch.zeros(4, 8, dtype=torch.bool)
    pruned[:, :3] = True
    fm = FixedMask(pruned, transpose=True)
    assert torch.equal(fm(w_stored) == 0, pruned.t() | (w_stored == 0))
