"""The objective's weights through the contract (training.objective, kl_weight, lm_weight and
their contradictions) and through the engine: the loss the loop reports for the papers' mix
is 0.5 T^2 KL + 0.5 CE computed by hand on a tiny model."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from clients.cli.spec_args import add_spec_args, spec_from_args
from service.schemas import PruneSpec, TrainingSpec
from worker.engine.progress import Reporter
from worker.engine.run import run
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.loop import LoopConfig, train
from worker.engine.train.objective import Objective


def test_the_presets_set_the_weights_and_keep_the_explicit_fields_working():
    paper = TrainingSpec(objective="paper")
    assert (paper.distill, paper.kl_weight, paper.lm_weight, paper.temperature) == (
        True,
        0.5,
        0.5,
        2.0,
    )
    lm = TrainingSpec(objective="lm")
    assert (lm.distill, lm.lm_weight) == (False, 1.0)
    assert TrainingSpec(objective="kl").lm_weight == 0.0
    mixed = TrainingSpec(kl_weight=0.3, lm_weight=0.7)  # the fields alone, as before
    assert (mixed.distill, mixed.kl_weight, mixed.lm_weight, mixed.objective) == (
        True,
        0.3,
        0.7,
        None,
    )
    # a method whose default is the LM loss follows the preset, not its default
    movement = PruneSpec(
        model="org/m", method="movement", sparsity=0.5, training={"objective": "paper"}
    )
    assert movement.training.distill is True and movement.training.kl_weight == 0.5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"objective": "paper", "lm_weight": 1.0}, "objective 'paper' sets .*; drop lm_weight"),
        ({"objective": "lm", "distill": True}, "objective 'lm' sets .*; drop distill"),
        ({"objective": "paper", "temperature": 4}, "drop temperature or the objective"),
        ({"kl_weight": 0.0}, "kl_weight 0 with distill on and lm_weight 0: nothing to train on"),
        ({"kl_weight": 0.0, "lm_weight": 1.0}, "set distill false"),
        ({"distill": False, "kl_weight": 0.5}, r"kl_weight: .* is off \(distill false\)"),
        ({"objective": "mix"}, "'kl', 'lm' or 'paper'"),
        ({"objective": {}}, "'kl', 'lm' or 'paper'"),  # not a name: refused, not a crash
    ],
)
def test_contradictions_are_refused_with_the_fields_named(fields, message):
    with pytest.raises(ValidationError, match=message):
        TrainingSpec(**fields)


@pytest.mark.parametrize("objective", [None, "kl", "lm", "paper"])
@pytest.mark.parametrize("method", ["movement", "gmp"])
def test_a_stored_spec_with_its_objective_reads_back_identical(method, objective):
    """The service stores the validated spec and its worker reads it back: the preset's own
    values and the defaults a method sets must not read as a contradiction."""
    training = {} if objective is None else {"objective": objective}
    spec = PruneSpec(model="org/m", method=method, sparsity=0.5, training=training)
    again = PruneSpec.model_validate_json(spec.model_dump_json())
    assert again == spec


def test_the_cli_flags_reach_the_contract():
    p = argparse.ArgumentParser()
    add_spec_args(p)
    common = ["--model", "org/m", "--sparsity", "0.5", "--method", "wanda", "--recover-steps", "2"]
    spec = spec_from_args(p.parse_args([*common, "--objective", "paper"]))
    assert spec.recovery.objective == "paper" and spec.recovery.kl_weight == 0.5
    spec = spec_from_args(p.parse_args([*common, "--kl-weight", "0.25", "--lm-weight", "1"]))
    assert (spec.recovery.kl_weight, spec.recovery.lm_weight) == (0.25, 1.0)


class OneParameter:
    """The smallest task: the final norm's weight trains, nothing is masked."""

    stage, trainable, default_lr = "recover", "final norm", 0.0

    def __init__(self, model):
        self.model = model

    def attach(self) -> dict:
        return {"norm": self.model.model.norm.weight}

    def before_step(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        pass

    def finish(self) -> dict:
        return {}


def test_the_loss_of_the_papers_mix_is_the_hand_computed_one(tiny_model_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"), dtype=torch.float32)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s, t = model(ids).logits[:, :-1].flatten(0, 1), teacher(ids).logits[:, :-1].flatten(0, 1)
    T = 2.0
    log_ps, log_pt = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean() * T * T
    ce = F.cross_entropy(s, ids[:, 1:].flatten())
    assert kl.item() > 0.01 and ce.item() > 0.1  # both terms count
    ts = TrainingSpec(objective="paper")
    objective = Objective(ts.distill, ts.temperature, ts.lm_weight, ts.kl_weight)
    cfg = LoopConfig(
        steps=1,
        batch_size=2,
        micro_batch=1,
        lr=1e-3,
        warmup_steps=0,
        weight_decay=0.0,
        checkpoint_every=10,
    )
    result = train(
        model,
        teacher,
        ids,
        OneParameter(model),
        objective,
        cfg,
        Reporter(),
        Checkpoints(tmp_path / "ckpt", "recover", "k"),
    )
    assert result.loss[0] == pytest.approx((0.5 * kl + 0.5 * ce).item(), rel=1e-5)
    assert objective.describe() == "0.5 x KL(teacher||student), T=2 + 0.5 x LM cross-entropy"


def test_the_report_states_the_objective_used(tiny_model_dir, calib_file, tmp_path):
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")),
        method="wanda",
        sparsity=0.5,
        device="cpu",
        calibration={"dataset": str(calib_file), "nsamples": 2, "seqlen": 32},
        recovery={
            "dataset": str(calib_file),
            "seqlen": 32,
            "batch_size": 2,
            "steps": 2,
            "objective": "paper",
        },
    )
    [tr] = run(spec, tmp_path / "out").training
    assert tr.objective == "paper: 0.5 x KL(teacher||student), T=2 + 0.5 x LM cross-entropy"


def test_a_preset_that_distils_from_a_self_teacher_is_refused_by_its_name():
    with pytest.raises(ValidationError, match="recovery.objective 'paper' distils: with method"):
        PruneSpec(
            model="org/m", method="pattern_lock", sparsity="2:4", recovery={"objective": "paper"}
        )
    lm = PruneSpec(
        model="org/m", method="pattern_lock", sparsity="2:4", recovery={"objective": "lm"}
    )
    assert lm.recovery.distill is False
