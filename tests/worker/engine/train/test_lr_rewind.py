"""Learning-rate rewinding (Prune Once for All's gmp option): the schedule the optimizer sees
goes back to its value at the ramp's start at every pruning step, through the contract, the
CLI and the one training loop."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError
from torch.optim.optimizer import register_optimizer_step_pre_hook

from clients.cli.spec_args import add_spec_args, spec_from_args
from service.schemas import PruneSpec
from worker.engine.run import run
from worker.engine.train.loop import LoopConfig, lr_at
from worker.engine.train.schedule import rewound_step


def test_lr_at_rewinds_at_every_pruning_step_and_spans_the_steps_outside_the_ramp():
    """20 steps, lr warm-up 2, pruning at 4, 6, 8, 10 (t_0 4, dt 2, end 10): the decay spans
    20 - 6 = 14 steps, 12 after the warm-up; by hand, the step each lr reads."""
    cfg = LoopConfig(
        steps=20,
        batch_size=1,
        micro_batch=1,
        lr=1.0,
        warmup_steps=2,
        weight_decay=0.0,
        checkpoint_every=5,
        lr_rewind=(4, 2, 10),
    )
    reads = [2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]  # steps 2..19
    want = [0.5, 1.0] + [1 - (r - 2) / 12 for r in reads]
    assert [lr_at(s, cfg) for s in range(20)] == pytest.approx(want)
    assert [rewound_step(s, 4, 2, 10) for s in range(2, 20)] == reads


def lrs_seen(spec: PruneSpec, out) -> list[float]:
    """The learning rate of every optimizer step of a real run, as the optimizer holds it."""
    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append(opt.param_groups[0]["lr"])
    )
    try:
        run(spec, out)
    finally:
        handle.remove()
    return seen


def gmp_spec(model_dir, data, rewind: bool) -> PruneSpec:
    training = {
        "dataset": str(data),
        "seqlen": 32,
        "batch_size": 2,
        "steps": 12,
        "lr": 3e-3,
        "lr_warmup_steps": 1,
        "warmup_steps": 2,
        "prune_every": 2,
        "cooldown_steps": 2,
        "lr_rewind": rewind,
    }
    return PruneSpec(
        model=str(model_dir), method="gmp", sparsity=0.5, device="cpu", training=training
    )


def test_gmp_with_lr_rewind_gives_the_optimizer_the_rewound_schedule(
    tiny_model_dir, calib_file, tmp_path
):
    """Pruning at steps 2, 4, 6, 8, 10 (ramp of 8): the decay spans 12 - 8 = 4 steps, 3
    after the warm-up of 1; every pruning step reads step 2 and the next step 3."""
    model_dir = tiny_model_dir("llama")
    seen = lrs_seen(gmp_spec(model_dir, calib_file, True), tmp_path / "rewind")
    want = [1, 1] + [2 / 3, 1 / 3] * 5
    assert seen == pytest.approx([3e-3 * w for w in want])
    plain = lrs_seen(gmp_spec(model_dir, calib_file, False), tmp_path / "plain")
    assert all(a > b for a, b in zip(plain[1:], plain[2:], strict=False))  # no rewinding


def test_lr_rewind_is_checked_where_it_applies():
    base = {"model": "org/m", "sparsity": 0.5}
    assert PruneSpec(**base, method="gmp", training={"lr_rewind": True}).training.lr_rewind
    with pytest.raises(ValidationError, match="lr_rewind: learning-rate rewinding is for gmp"):
        PruneSpec(**base, method="movement", training={"lr_rewind": True})
    with pytest.raises(ValidationError, match="recovery.lr_rewind"):
        PruneSpec(**base, method="wanda", recovery={"lr_rewind": True})


def test_the_cli_flag_sets_the_field():
    p = argparse.ArgumentParser()
    add_spec_args(p)
    common = ["--model", "org/m", "--sparsity", "0.5"]
    spec = spec_from_args(p.parse_args([*common, "--method", "gmp", "--lr-rewind"]))
    assert spec.training.lr_rewind is True
    with pytest.raises(ValidationError, match="recovery.lr_rewind: learning-rate rewinding"):
        spec_from_args(
            p.parse_args([*common, "--method", "wanda", "--recover-steps", "2", "--lr-rewind"])
        )
