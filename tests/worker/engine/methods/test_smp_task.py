"""SMP as the paper: zero-initialised scores on the cubic schedule, SMP-L and SMP-S, and the
regulariser; the weights that survive stay bit-identical to the dense ones."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from service.schemas import PruneSpec
from tests.worker.engine.support import linear_weights, pattern, zeros_per_group
from worker.engine.methods.smp.options import SMPOptions
from worker.engine.methods.smp.task import LearnedMask, smp_s_ratios
from worker.engine.run import plan, run
from worker.engine.train.schedule import Schedule
from worker.engine.train.tasks import TaskInputs

TRAIN: dict = {}


@pytest.fixture(autouse=True)
def _train_data(calib_file):
    TRAIN.update(dataset=str(calib_file), seqlen=32, batch_size=2, checkpoint_every=4, lr=0.2)


def spec(model_dir, sparsity, steps=10, **options) -> PruneSpec:
    return PruneSpec(
        model=str(model_dir),
        method="smp",
        sparsity=sparsity,
        device="cpu",
        options=options,
        training={**TRAIN, "steps": steps, "warmup_steps": 1, "cooldown_steps": 2},
    )


@pytest.mark.parametrize("sparsity", ["2:4", 0.5])
def test_zero_init_starts_dense_and_ends_at_the_pattern_with_dense_survivors(
    tiny_model_dir, tmp_path, sparsity
):
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model_dir("llama")
    s = spec(model_dir, sparsity, smp_init="zero")
    assert [st.name for st in plan(s)] == ["load", "train", "save"]  # no calibration, no walk
    report = run(s, tmp_path / "out")
    dense = linear_weights(AutoModelForCausalLM.from_pretrained(model_dir).model.layers, "m")
    after = linear_weights(AutoModelForCausalLM.from_pretrained(tmp_path / "out").model.layers, "m")
    p = pattern(sparsity)
    for name, w in after.items():
        kept = w != 0
        assert torch.equal(w[kept], dense[name][kept]), name
        if p.is_nm:
            assert (zeros_per_group(w, p.m) == p.n).all(), name
        else:
            assert int((~kept).sum()) == w.numel() // 2, name
    [tr] = report.training
    assert len(tr.loss) == 10 and report.sparsity == pytest.approx(0.5, abs=1e-6)


def test_smp_s_gives_each_matrix_its_own_sparsity_around_the_target(tiny_model_dir, tmp_path):
    r = run(
        spec(tiny_model_dir("llama"), 0.5, smp_init="zero", smp_variant="S", smp_p=0.01),
        tmp_path / "out",
    )
    per = [m.sparsity for m in r.modules]
    assert max(per) - min(per) > 0.01  # not every matrix at 50%
    assert r.sparsity == pytest.approx(0.5, abs=0.02)


def test_smp_s_ratios_keep_in_proportion_to_the_scores_within_a_kind():
    up, q = "model.layers.{}.mlp.up_proj", "model.layers.{}.self_attn.q_proj"
    means = {up.format(0): 0.6, up.format(1): 0.2, q.format(0): 0.5, q.format(1): 0.5}
    r = smp_s_ratios(means, 0.7)
    assert r[up.format(0)] == pytest.approx(1 - 0.3 * 0.6 / 0.4)
    assert r[up.format(1)] == pytest.approx(1 - 0.3 * 0.2 / 0.4)
    assert r[q.format(0)] == pytest.approx(0.7)
    assert smp_s_ratios({"a.0.x": 1e-9, "a.1.x": 1.0}, 0.0)["a.1.x"] == 0.0  # keep <= 100%


def test_the_regulariser_joins_the_score_gradient_once_per_step():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4, bias=False)
    dense = lin.weight.detach().clone()
    opts = SMPOptions(smp_init="zero", smp_lambda=8.0)
    inputs = TaskInputs(
        modules={"m.0.lin": lin},
        masks=None,
        scores={},
        pattern=pattern(0.5),
        dense_weight=lambda n: dense,
        options=opts,
        schedule=Schedule(0.0, 0.5, 0, 1, 2),
    )
    task = LearnedMask(inputs)
    [scores] = task.attach().values()
    task.before_step(2)  # at the target: lambda_t = lambda
    x = torch.randn(3, 8)
    for _ in range(2):  # two micro-batches
        lin(x).sum().backward()
    signal = 2 * (x.sum(0, keepdim=True).expand(4, 8) * dense)  # dL/dM = W * dL/dW', twice
    sig = torch.sigmoid(torch.zeros(4, 8))
    penalty = 8.0 / 32 * sig * (1 - sig)
    torch.testing.assert_close(scores.grad, signal + penalty)


def test_smp_options_are_checked_against_the_pattern_and_the_schedule():
    base = {"model": "org/m", "method": "smp"}
    with pytest.raises(ValidationError, match="options.smp_variant: SMP-S .* cannot hold an N:M"):
        PruneSpec(**base, sparsity="2:4", options={"smp_variant": "S"})
    with pytest.raises(ValidationError, match="schedule fields are for smp with smp_init 'zero'"):
        PruneSpec(**base, sparsity=0.5, training={"warmup_steps": 2})
    PruneSpec(**base, sparsity=0.5, options={"smp_init": "zero"}, training={"warmup_steps": 2})
