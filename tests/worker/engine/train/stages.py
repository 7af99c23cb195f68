"""Every training task of the engine on a tiny Llama, ready for `train()`: what the device,
precision and GPU tests run."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM

from tests.worker.engine.support import pattern
from worker.engine.methods.gmp.task import GradualMagnitude
from worker.engine.methods.movement.task import Movement
from worker.engine.methods.smp.options import SMPOptions
from worker.engine.methods.smp.task import LearnedMask
from worker.engine.model.model_io import get_weight
from worker.engine.progress import Reporter
from worker.engine.prune.mask_state import MaskState
from worker.engine.prune.masks import n_of_m
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.loop import LoopConfig, LoopResult, train
from worker.engine.train.objective import Objective
from worker.engine.train.schedule import Schedule
from worker.engine.train.tasks import Recovery, TaskInputs

TASKS = ("recovery", "smp", "movement", "gmp")


def linears(model) -> dict:
    return {
        n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n
    }


def build(kind: str, model, dense) -> object:
    """The task `kind` over `model`'s decoder Linears, its inputs made on the CPU (as the walk
    makes them), the dense weights read from `dense`."""
    mods, p = linears(model), pattern("2:4")
    weights = {n: get_weight(m).detach().cpu().float() for n, m in linears(dense).items()}
    if kind == "recovery":
        masks = MaskState()
        for n, w in weights.items():
            masks.record(n, n_of_m(w.abs(), 2, 4), p)
        return Recovery(mods, masks)
    if kind == "smp":
        scores = {n: w.abs() / w.abs().max() for n, w in weights.items()}
        dense_mods = linears(dense)
        inputs = TaskInputs(
            modules=mods,
            masks=MaskState(),
            scores=scores,
            pattern=p,
            dense_weight=lambda n: get_weight(dense_mods[n]),
            options=SMPOptions(),
        )
        return LearnedMask(inputs)
    schedule = Schedule(0.0, 0.5, 1, 1, 2)
    if kind == "movement":
        opts = SimpleNamespace(
            movement_soft=False,
            movement_tau=0.5,
            movement_lambda=0.0,
            score_lr=1e-2,
            scope="matrix",
        )
        return Movement(mods, p, schedule, opts)
    return GradualMagnitude(mods, p, schedule)


def run_stage(
    kind: str,
    model_dir,
    tmp_path,
    *,
    device="cpu",
    precision="fp32",
    steps=3,
    checkpointing=True,
    dtype=torch.float32,
    ids=None,
) -> tuple[LoopResult, torch.nn.Module, torch.nn.Module, dict]:
    """Train task `kind` for `steps` steps; (result, trained model, dense copy, the dense
    state before training)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    dense = copy.deepcopy(model)  # stays on the CPU, as run.dense does
    before = {k: v.clone() for k, v in dense.state_dict().items()}
    model.to(device)
    task = build(kind, model, dense)
    cfg = LoopConfig(
        steps=steps,
        batch_size=2,
        micro_batch=1,
        lr=1e-3,
        warmup_steps=0,
        weight_decay=0.0,
        checkpoint_every=100,
        precision=precision,
        checkpointing=checkpointing,
    )
    if ids is None:
        ids = torch.randint(0, 500, (steps * 2, 16), generator=torch.Generator().manual_seed(0))
    result = train(
        model,
        dense,
        ids,
        task,
        Objective(True, 2.0, 0.0),
        cfg,
        Reporter(),
        Checkpoints(tmp_path / "ckpt", kind, "k"),
    )
    return result, model, dense, before
