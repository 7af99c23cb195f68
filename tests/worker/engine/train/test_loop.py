"""The training loop's schedule and objective."""

from __future__ import annotations

import pytest
import torch

from worker.engine.train.loop import LoopConfig, lr_at
from worker.engine.train.objective import Objective


def cfg(steps=10, warmup=2):
    return LoopConfig(
        steps=steps,
        batch_size=1,
        micro_batch=1,
        lr=1.0,
        warmup_steps=warmup,
        weight_decay=0.0,
        checkpoint_every=5,
    )


def test_warmup_then_linear_decay():
    c = cfg()
    lrs = [lr_at(s, c) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == 1.0 and lrs[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))


def test_distillation_is_zero_for_identical_logits_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    kd = Objective(distill=True, temperature=2.0, lm_weight=0.0)
    assert kd(logits, logits, ids).item() == pytest.approx(0.0, abs=1e-6)
    assert kd(logits + torch.randn(2, 6, 11), logits, ids).item() > 0.01


def test_without_distillation_the_objective_is_the_lm_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    lm = Objective(distill=False, temperature=2.0, lm_weight=0.0)
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1)
    )
    assert lm(logits, None, ids).item() == pytest.approx(expected.item())
    assert "LM" in lm.describe() and "KL" not in lm.describe()


@pytest.mark.parametrize(("distill", "lm_weight"), [(True, 0.0), (True, 0.5), (False, 0.0)])
def test_the_chunked_loss_equals_the_loss_of_the_whole_logits(monkeypatch, distill, lm_weight):
    from worker.engine.train import objective

    monkeypatch.setattr(objective, "CHUNK_ELEMENTS", 5 * 11)  # chunks of 5 tokens of 11 logits
    torch.manual_seed(0)
    head, teacher_head = torch.nn.Linear(6, 11), torch.nn.Linear(6, 11)
    hs = torch.randn(2, 9, 6, requires_grad=True)
    ht, ids = torch.randn(2, 9, 6), torch.randint(0, 11, (2, 9))
    obj = Objective(distill=distill, temperature=2.0, lm_weight=lm_weight)
    whole = obj(head(hs), teacher_head(ht), ids) * 0.5
    (want,) = torch.autograd.grad(whole, hs)
    got = obj.backward(hs, ht, ids, (head, teacher_head), vocab=11, scale=0.5)
    assert got == pytest.approx(whole.item(), rel=1e-6)
    torch.testing.assert_close(hs.grad, want)
    assert objective.chunk_tokens(11) == 5
