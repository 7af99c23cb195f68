"""The spec flags are generated from the contract: every field of PruneSpec and of the objects
it holds has a flag, and a value given to a new flag reaches the spec."""

from __future__ import annotations

import argparse

import pytest
from pydantic import BaseModel

from clients.cli.spec_args import DEST, SHARES, add_spec_args, spec_from_args
from service.methods import METHODS
from service.schemas import SCHEDULE_FIELDS, PruneSpec


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_spec_args(p)
    return p


def contract_paths() -> list[str]:
    """Every leaf field of the contract, as `object.field`, found without the CLI's tables."""
    out = []
    for name, info in PruneSpec.model_fields.items():
        if name == "options":
            continue
        models = [
            a
            for a in (info.annotation, *getattr(info.annotation, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not models:
            out.append(name)
            continue
        out += [f"{name}.{field}" for field in models[0].model_fields]
    return out


def test_every_contract_field_has_a_flag():
    dests = {a.dest for a in parser()._actions}
    missing = []
    for path in contract_paths():
        obj, _, field = path.rpartition(".")
        if obj in SHARES and field != "steps":  # recovery reads training's flags
            if field in SCHEDULE_FIELDS:
                continue  # training only: recovery keeps the mask fixed
            path = f"{SHARES[obj]}.{field}"
        if DEST + path not in dests:
            missing.append(path)
    assert not missing, f"contract fields without a flag: {missing}"


def test_every_method_option_has_a_flag():
    flags = {s for a in parser()._actions for s in a.option_strings}
    for model in METHODS.values():
        for name in model.model_fields:
            assert "--" + name.replace("_", "-") in flags


BASE = ["--model", "org/m", "--method", "wanda", "--sparsity", "0.5"]


def spec(*flags: str) -> PruneSpec:
    return spec_from_args(parser().parse_args([*BASE, *flags]))


def test_flags_the_contract_gained_reach_the_spec():
    s = spec(
        "--recover-steps",
        "5",
        "--train-weight-decay",
        "0.1",
        "--train-holdout",
        "0.2",
        "--train-temperature",
        "3",
        "--train-checkpoint-every",
        "7",
        "--train-lr-warmup-steps",
        "2",
        "--refine",
        "dsnot",
        "--dsnot-var-power",
        "2",
        "--reconstruct-epochs",
        "1",
        "--reconstruct-weight-decay",
        "0.01",
    )
    r = s.recovery
    assert (r.steps, r.weight_decay, r.holdout, r.temperature) == (5, 0.1, 0.2, 3.0)
    assert (r.checkpoint_every, r.lr_warmup_steps) == (7, 2)
    assert s.dsnot.var_power == 2.0 and s.reconstruction.weight_decay == 0.01


def test_unset_flags_leave_the_contract_defaults():
    assert spec() == PruneSpec(model="org/m", method="wanda", sparsity=0.5)


def test_shared_training_flags_feed_both_stages_but_the_schedule_only_training():
    s = spec(
        "--method",
        "gmp",
        "--train-steps",
        "20",
        "--recover-steps",
        "4",
        "--lr",
        "0.01",
        "--warmup-steps",
        "2",
    )
    assert (s.training.steps, s.training.lr, s.training.warmup_steps) == (20, 0.01, 2)
    assert (s.recovery.steps, s.recovery.lr, s.recovery.warmup_steps) == (4, 0.01, None)


def test_a_flag_of_an_object_left_off_is_refused():
    with pytest.raises(SystemExit, match="--reconstruct-lr needs --reconstruct-epochs"):
        spec("--reconstruct-lr", "0.1")
    with pytest.raises(SystemExit, match="--eval-prompt needs --eval or --eval-tasks"):
        spec("--eval-prompt", "hi")


def test_eval_windows_default_to_the_calibration_seqlen():
    assert spec("--seqlen", "64", "--eval", "wikitext2").evaluation.seqlen == 64
    assert spec("--eval-tasks", "a,b").evaluation.tasks == ["a", "b"]
