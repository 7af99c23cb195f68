"""Movement pruning and gradual magnitude pruning on the one training engine: the cubic
schedule, the movement scores against a hand-computed gradient, exact final patterns, weights
that move but never revive, soft movement's lambda, resume at the right schedule step."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from service.schemas import PruneSpec, TrainingSpec, resume_dir
from tests.worker.engine.support import linear_weights, pattern, zeros_per_group
from tests.worker.engine.test_run_training import KillAt
from worker.engine.methods.movement.options import MovementOptions
from worker.engine.methods.movement.task import (
    Movement,
    SoftMovement,
    count_at_most,
    floor_count,
    global_threshold,
)
from worker.engine.run import run
from worker.engine.train.schedule import Schedule, select_at


def test_the_schedule_is_the_cubic_formula_and_monotone():
    s = Schedule(initial=0.1, final=0.8, start=10, every=5, n=8)  # prunes at 10, 15, ..., 50
    for t in (0, 9):
        assert s.sparsity_at(t) == 0.1
    for k in range(9):
        t = 10 + 5 * k
        want = 0.8 + (0.1 - 0.8) * (1 - (t - 10) / (8 * 5)) ** 3
        assert s.sparsity_at(t) == pytest.approx(want)
        assert s.sparsity_at(t + 4) == pytest.approx(want)  # held between pruning steps
        assert s.prunes_at(t) and not s.prunes_at(t + 1)
    assert s.sparsity_at(50) == s.sparsity_at(99) == pytest.approx(0.8)
    seq = [s.sparsity_at(t) for t in range(100)]
    assert all(a <= b for a, b in zip(seq, seq[1:], strict=False)) and seq[0] < seq[-1]


def test_the_default_schedule_scales_with_the_step_budget():
    ts = TrainingSpec(steps=100)
    assert ts.schedule_steps() == (10, 7, 10, 20)  # 10% warm-up, 20% cool-down, ramp / 10
    assert ts.schedule_steps(default_every=1) == (10, 1, 70, 20)
    with pytest.raises(ValueError, match="training.warmup_steps: warm-up 60 \\+ cool-down 40"):
        TrainingSpec(steps=100, warmup_steps=60, cooldown_steps=40).schedule_steps()
    with pytest.raises(ValueError, match="training.prune_every: 80 is longer than the 70"):
        TrainingSpec(steps=100, prune_every=80).schedule_steps()


@pytest.mark.parametrize("sparsity", [0.5, "2:4"])
def test_select_at_reaches_the_pattern_and_each_mask_is_inside_the_next(sparsity):
    scores = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    p = pattern(sparsity)
    masks = [select_at(scores, r, p) for r in (0.0, 0.125, 0.25, 0.375, 0.5)]
    assert not masks[0].any()
    for a, b in zip(masks, masks[1:], strict=False):
        assert (b >= a).all()  # a weight pruned at a lower sparsity stays pruned
    assert (masks[-1].sum(dim=1) == 16).all()
    if p.is_nm:
        assert (zeros_per_group((~masks[-1]).float(), 4) == 2).all()


class Tiny(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        self.lin.weight.data.copy_(w)


def test_movement_scores_are_minus_the_sum_of_w_times_the_weight_gradient():
    torch.manual_seed(0)
    model = Tiny(torch.randn(4, 8))
    x, c = torch.randn(5, 8), torch.randn(5, 4)
    task = Movement({"lin": model.lin}, pattern(0.5), None, MovementOptions())
    [w] = task.attach().values()
    opt = torch.optim.SGD([w], lr=0.1)
    expected = torch.zeros(4, 8)
    for step in range(3):
        task.before_step(step)
        w_now = w.detach().clone()
        loss = (model.lin(x) * c).sum()  # dL/dW' = c^T x, by hand
        loss.backward()
        expected -= w_now * (c.t() @ x)
        opt.step()
        opt.zero_grad()
        task.after_step(step)
    torch.testing.assert_close(task.masks["lin"].scores.detach(), expected)


def spec(model_dir, method, sparsity, steps=12, options=None, **kw) -> PruneSpec:
    return PruneSpec(
        model=str(model_dir),
        method=method,
        sparsity=sparsity,
        device="cpu",
        options=options or {},
        training={**TRAIN, "steps": steps, **kw},
    )


TRAIN: dict = {}


@pytest.fixture(autouse=True)
def _train_data(calib_file):
    TRAIN.update(dataset=str(calib_file), seqlen=32, batch_size=2, checkpoint_every=3, lr=3e-3)


CASES = [
    ("movement", 0.5, "matrix"),
    ("movement", 0.5, "row"),
    ("movement", "2:4", "matrix"),
    ("gmp", 0.7, "matrix"),
    ("gmp", 0.7, "row"),
    ("gmp", "2:4", "matrix"),
]


@pytest.mark.parametrize(("method", "sparsity", "scope"), CASES)
def test_final_pattern_is_exact_and_weights_move_but_never_revive(
    tiny_model_dir, tmp_path, method, sparsity, scope
):
    from transformers import AutoModelForCausalLM

    model_dir = tiny_model_dir("llama")
    report = run(spec(model_dir, method, sparsity, options={"scope": scope}), tmp_path / "out")
    dense = linear_weights(AutoModelForCausalLM.from_pretrained(model_dir).model.layers, "m")
    after = linear_weights(AutoModelForCausalLM.from_pretrained(tmp_path / "out").model.layers, "m")
    p, moved, rows_differ = pattern(sparsity), 0, False
    for name, w in after.items():
        zeros = w == 0
        if p.is_nm:
            assert (zeros_per_group(w, p.m) == p.n).all(), name
        elif scope == "row":
            assert (zeros.sum(dim=1) == int(w.shape[1] * p.ratio)).all(), name
        else:  # one selection over the whole matrix: the count is exact, rows differ
            assert int(zeros.sum()) == int(round(w.numel() * p.ratio, 9)), name
            rows_differ = rows_differ or len(set(zeros.sum(dim=1).tolist())) > 1
        moved += int((w[~zeros] != dense[name][~zeros]).sum())  # kept weights trained
    assert moved > 0.5 * sum(int((w != 0).sum()) for w in after.values())
    assert rows_differ is (scope == "matrix" and not p.is_nm)
    [tr] = report.training
    assert tr.stage == "train" and len(tr.loss) == 12
    assert report.nm_ok is (True if p.is_nm else None)
    objective = "LM cross-entropy" if method == "movement" else "KL(teacher||student)"
    assert objective in tr.objective


def test_soft_movement_at_its_defaults_reaches_the_requested_sparsity(tiny_model_dir, tmp_path):
    """One threshold for every matrix: 50% over all of them, each matrix at what its scores
    give (not every matrix at 50%)."""
    opts = {"movement_soft": True}
    r = run(spec(tiny_model_dir("llama"), "movement", 0.5, options=opts), tmp_path / "out")
    assert r.sparsity == pytest.approx(0.5, abs=0.01)
    per = [m.sparsity for m in r.modules]
    assert max(per) - min(per) > 0.02
    [line] = [w for w in r.warnings if w.startswith("soft movement:")]
    assert float(line.split()[2]) == pytest.approx(0.5, abs=0.01)


def test_soft_movement_with_the_fixed_threshold_prunes_more_with_a_larger_lambda(
    tiny_model_dir, tmp_path
):
    got = []
    for lam in (0.0, 3e3, 3e4):
        opts = {"movement_soft": True, "movement_threshold": "fixed", "movement_lambda": lam}
        r = run(spec(tiny_model_dir("llama"), "movement", 0.5, options=opts), tmp_path / f"{lam}")
        got.append(r.sparsity)
        assert any("the sparsity asked for is not enforced" in w for w in r.warnings)
    assert got[0] < got[1] < got[2]


def test_the_shared_threshold_is_the_kth_value_of_all_scores_and_the_floor_holds():
    g = torch.Generator().manual_seed(0)
    keys = [torch.randn(4, 8, generator=g), torch.randn(16, 2, generator=g)]
    flat = torch.cat([k.flatten() for k in keys]).sort().values
    for k in (1, 7, 31, 64):
        assert global_threshold(keys, k) == pytest.approx(float(flat[k - 1]))
        assert count_at_most(keys, global_threshold(keys, k)) == k
    model = Tiny(torch.randn(8, 64, generator=g))
    task = SoftMovement({"lin": model.lin}, pattern(0.5), None, MovementOptions(movement_soft=True))
    task.attach()
    task.theta = math.inf  # a threshold above every score: only the floor is kept
    kept = int((~task.masks["lin"].pruned()).sum())
    assert kept == floor_count(8 * 64)


def test_a_killed_gmp_run_resumes_at_the_right_schedule_step(tiny_model_dir, tmp_path):
    """Killed after step 7: the checkpoint of step 6 holds weights, optimizer and masks; the
    resumed run prunes at the same steps and ends equal to an uninterrupted one."""
    model_dir = tiny_model_dir("llama")
    s = spec(model_dir, "gmp", 0.6, steps=12, warmup_steps=2, prune_every=2, cooldown_steps=2)
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        run(s, out, reporter=KillAt(7))
    assert (resume_dir(out) / "train.json").is_file()
    resumed = run(s, out)
    whole = run(s, tmp_path / "whole")
    assert resumed.training[0].resumed_from_step == 6
    assert resumed.training[0].loss == pytest.approx(whole.training[0].loss, rel=1e-4)
    from transformers import AutoModelForCausalLM

    a = linear_weights(AutoModelForCausalLM.from_pretrained(out).model.layers, "m")
    b = linear_weights(AutoModelForCausalLM.from_pretrained(tmp_path / "whole").model.layers, "m")
    for name in a:
        assert torch.equal(a[name] == 0, b[name] == 0), name
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


def test_schedule_fields_are_checked_where_they_apply():
    base = {"model": "org/m", "sparsity": 0.5}
    fields_for = "schedule fields are for smp with smp_init 'zero', movement, gmp, not 'smp'"
    with pytest.raises(ValidationError, match=fields_for):
        PruneSpec(**base, method="smp", training={"prune_every": 2})
    with pytest.raises(ValidationError, match="recovery: the pruning schedule fields"):
        PruneSpec(**base, method="wanda", recovery={"warmup_steps": 2})
    with pytest.raises(ValidationError, match="initial_sparsity: 0.6 must be below"):
        PruneSpec(**base, method="gmp", training={"initial_sparsity": 0.6})
    with pytest.raises(ValidationError, match="cannot hold an N:M pattern"):
        PruneSpec(**{**base, "sparsity": "2:4"}, method="movement", options={"movement_soft": True})
    movement = PruneSpec(**base, method="movement")
    assert movement.training.distill is False  # the LM loss unless distillation is asked
    assert PruneSpec(**base, method="movement", training={"distill": True}).training.distill
    assert PruneSpec(**base, method="gmp").training.distill is True
    shared = TrainingSpec()
    PruneSpec(**base, method="movement", training=shared)
    assert shared.distill is True  # the caller's object is not changed


def test_hard_movement_breaks_the_warm_up_ties_by_magnitude():
    """Before the scores carry any signal they are all 0: with an initial sparsity the mask
    must not prune the same first columns of every row, but each row's lowest |W|."""
    torch.manual_seed(0)
    w = torch.randn(6, 16)
    model = Tiny(w)
    sched = Schedule(initial=0.25, final=0.5, start=4, every=1, n=4)
    task = Movement({"lin": model.lin}, pattern(0.5), sched, MovementOptions())
    task.attach()
    task.before_step(0)
    pruned = task.masks["lin"].pruned()
    assert torch.equal(pruned, select_at(w.abs(), 0.25, pattern(0.5), "matrix"))
    assert len({tuple(row.nonzero().flatten().tolist()) for row in pruned}) > 1
