"""The spec flags shared by `pruneserve prune` (local) and `pruneserve submit` (remote).

Named like the JSON fields of PruneSpec; each method's option flags are generated from its
options model (service/methods.py), with their descriptions and defaults.
"""

from __future__ import annotations

import argparse
import typing
from typing import Any

from service.methods import METHODS
from service.reconstruction import RECON_TARGETS, ReconstructionSpec
from service.schemas import (
    DEFAULT_PROMPTS,
    LOADS,
    REFINERS,
    SPARSITY_PROFILES,
    CalibrationSpec,
    DSnoTSpec,
    EvalSpec,
    OWLSpec,
    PruneSpec,
    TrainingSpec,
)

OPTION_DEST = "option__"  # argparse dest prefix of the generated method-option flags


def _default(model, name: str) -> Any:
    return model.model_fields[name].default


def add_spec_args(p: argparse.ArgumentParser) -> None:
    cal, ev = CalibrationSpec, EvalSpec
    p.add_argument("--model", required=True, help="hub id org/name, or a local model")
    p.add_argument("--revision", default=None, help="hub revision: branch, tag or commit")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--sparsity", required=True, help='fraction such as 0.5, or "N:M" such as 2:4')
    p.add_argument(
        "--calibration",
        default=_default(cal, "dataset"),
        help="calibration data: wikitext2, c4, a .txt/.jsonl file or upload:<id> "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--nsamples",
        type=int,
        default=_default(cal, "nsamples"),
        help="calibration sequences (default: %(default)s)",
    )
    p.add_argument(
        "--seqlen",
        type=int,
        default=_default(cal, "seqlen"),
        help="calibration tokens per sequence (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=_default(cal, "seed"),
        help="calibration window seed (default: %(default)s)",
    )
    p.add_argument(
        "--eval",
        default=None,
        help="evaluate perplexity on this dataset, e.g. wikitext2 (default: no)",
    )
    p.add_argument(
        "--eval-seqlen", type=int, default=None, help="evaluation window (default: --seqlen)"
    )
    p.add_argument(
        "--eval-windows",
        type=int,
        default=_default(ev, "max_windows"),
        help="at most this many windows (default: all)",
    )
    p.add_argument(
        "--eval-prompt",
        action="append",
        default=None,
        help="a prompt for the greedy sample generations of --eval; repeatable (default: "
        f"{len(DEFAULT_PROMPTS)} short neutral prompts)",
    )
    p.add_argument(
        "--eval-sample-tokens",
        type=int,
        default=_default(ev, "sample_tokens"),
        help="tokens generated per prompt and stage (default: %(default)s)",
    )
    p.add_argument(
        "--eval-tasks",
        default=None,
        help="task accuracy, dense and pruned, with lm-evaluation-harness: a comma list of "
        "tasks, e.g. pruneserve_facts (shipped, offline), arc_easy,hellaswag, or a directory "
        "with a task YAML and its JSON-lines data (default: none)",
    )
    p.add_argument(
        "--eval-task-limit",
        type=int,
        default=None,
        help="at most this many examples of each task (default: all)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        help="keep modules matching this fnmatch glob over full names dense, e.g. "
        "'*.mlp.down_proj' or '*.self_attn.*'; repeatable (default: none)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument(
        "--dtype", default="auto", help="auto | float32 | bfloat16 | float16 (default: %(default)s)"
    )
    p.add_argument(
        "--checkpoint-layers",
        type=int,
        default=0,
        help="save the walk's state every N layers, so the same command run again after a "
        "crash resumes there; 0: whenever 5 s passed since the last save (default: %(default)s)",
    )
    p.add_argument(
        "--load",
        default="auto",
        choices=LOADS,
        help="eager: the whole model in memory; lazy: one decoder layer at a time from the "
        "checkpoint, each pruned layer written at once (no training); auto: lazy when the "
        "weights exceed half the available memory (default: %(default)s)",
    )
    add_option_args(p.add_argument_group("method options (only the chosen method's apply)"))
    add_profile_args(p.add_argument_group("layer-wise sparsity (OWL) and mask refinement (DSnoT)"))
    add_reconstruction_args(p.add_argument_group("block-wise reconstruction (EBFT)"))
    add_training_args(p.add_argument_group("training (smp's own training, and recovery)"))


def add_reconstruction_args(group) -> None:
    rc = ReconstructionSpec
    group.add_argument(
        "--reconstruct-epochs",
        type=int,
        default=0,
        help="inside the walk, train each pruned layer's kept weights (masks fixed) for this "
        "many epochs over the calibration windows to match the dense layer's output "
        "(default: 0 = off)",
    )
    group.add_argument(
        "--reconstruct-lr",
        type=float,
        default=None,
        help=f"reconstruction: peak learning rate (default: {_default(rc, 'lr'):g})",
    )
    group.add_argument(
        "--reconstruct-target",
        default=None,
        choices=RECON_TARGETS,
        help="reconstruction: the dense layer's output on the pruned model's activations "
        "(pruned_input) or on the dense model's (dense_input) "
        f"(default: {_default(rc, 'target')})",
    )
    group.add_argument(
        "--reconstruct-batch",
        type=int,
        default=None,
        help="reconstruction: calibration windows per step "
        f"(default: {_default(rc, 'batch_size')})",
    )


def reconstruction_from_args(args: argparse.Namespace) -> dict | None:
    """The `reconstruction` object, or None when --reconstruct-epochs is 0."""
    if not args.reconstruct_epochs:
        return None
    knobs = (
        ("lr", args.reconstruct_lr),
        ("target", args.reconstruct_target),
        ("batch_size", args.reconstruct_batch),
    )
    return {"epochs": args.reconstruct_epochs, **{k: v for k, v in knobs if v is not None}}


def add_profile_args(group) -> None:
    owl, ds = OWLSpec, DSnoTSpec
    group.add_argument(
        "--sparsity-profile",
        default="uniform",
        choices=SPARSITY_PROFILES,
        help="uniform: every layer at --sparsity; owl: each layer its own, from its outlier "
        "ratio, with the mean at --sparsity (unstructured only) (default: %(default)s)",
    )
    group.add_argument(
        "--owl-m",
        type=float,
        default=None,
        help=f"OWL: an outlier is a Wanda score above M x its layer's mean "
        f"(default: {_default(owl, 'm'):g})",
    )
    group.add_argument(
        "--owl-lambda",
        type=float,
        default=None,
        help="OWL: layer sparsities lie in [s - lambda, s + lambda] "
        f"(default: {_default(owl, 'lam'):g})",
    )
    group.add_argument(
        "--owl-samples",
        type=int,
        default=None,
        help="OWL: calibration windows of the dense survey that measures every layer's "
        f"outlier ratio (default: {_default(owl, 'samples')})",
    )
    group.add_argument(
        "--refine",
        default="none",
        choices=REFINERS,
        help="dsnot: after pruning, swap pruned and kept weights per row (per group for N:M) "
        "where that lowers the expected output error; no training (default: %(default)s)",
    )
    group.add_argument(
        "--dsnot-cycles",
        type=int,
        default=None,
        help=f"DSnoT: swap rounds at most (default: {_default(ds, 'max_cycles')})",
    )
    group.add_argument(
        "--dsnot-threshold",
        type=float,
        default=None,
        help="DSnoT: a row stops once its expected output error per token is at most this "
        f"(default: {_default(ds, 'update_threshold'):g})",
    )


def profile_from_args(args: argparse.Namespace) -> dict:
    """The OWL / DSnoT fields; their knob objects only when a knob flag was given."""
    out: dict[str, Any] = {"sparsity_profile": args.sparsity_profile, "refine": args.refine}
    knobs = (("m", args.owl_m), ("lam", args.owl_lambda), ("samples", args.owl_samples))
    owl = {k: v for k, v in knobs if v is not None}
    if owl:
        out["owl"] = owl
    knobs = (("max_cycles", args.dsnot_cycles), ("update_threshold", args.dsnot_threshold))
    ds = {k: v for k, v in knobs if v is not None}
    if ds:
        out["dsnot"] = ds
    return out


def add_training_args(group) -> None:
    ts = TrainingSpec
    group.add_argument(
        "--train-steps",
        type=int,
        default=None,
        help="steps of the method's own training, for methods that learn such as "
        f"smp (default: {_default(ts, 'steps')})",
    )
    group.add_argument(
        "--recover-steps",
        type=int,
        default=0,
        help="after pruning, fine-tune the kept weights with distillation for this "
        "many steps, masks fixed (default: 0 = off)",
    )
    group.add_argument(
        "--train-data",
        default=_default(ts, "dataset"),
        help="training data, as --calibration; named datasets train on their "
        "calibration split (default: %(default)s)",
    )
    group.add_argument(
        "--train-seqlen",
        type=int,
        default=_default(ts, "seqlen"),
        help="tokens per training sequence (default: %(default)s)",
    )
    group.add_argument(
        "--train-batch",
        type=int,
        default=_default(ts, "batch_size"),
        help="sequences per optimizer step (default: %(default)s)",
    )
    group.add_argument(
        "--micro-batch",
        type=int,
        default=_default(ts, "micro_batch"),
        help="sequences per forward pass (default: %(default)s)",
    )
    group.add_argument(
        "--train-processes",
        type=int,
        default=None,
        help="recovery: train in N processes with the model sharded by FSDP, one per GPU "
        "(default: the visible GPUs, 1 on CPU)",
    )
    group.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default: 1e-2 for mask scores, 1e-4 for weights)",
    )
    group.add_argument(
        "--distill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="distil from the dense model (KL at T=2); --no-distill trains on the "
        "language-model loss (default: on; off for movement, whose objective is the LM loss)",
    )
    group.add_argument(
        "--lm-weight",
        type=float,
        default=None,
        help="weight of the language-model loss beside distillation (default: 0 when "
        "distilling, 1 otherwise)",
    )
    group.add_argument(
        "--kl-weight",
        type=float,
        default=None,
        help="weight of the distillation term beside --lm-weight (default: 1)",
    )
    group.add_argument(
        "--objective",
        choices=("kl", "lm", "paper"),
        default=None,
        help="the objective in one flag, instead of --distill/--kl-weight/--lm-weight: kl (KL "
        "at T=2), lm (the LM loss), paper (0.5 KL + 0.5 LM at T=2, the papers' mix) "
        "(default: the method's)",
    )
    group.add_argument(
        "--lr-rewind",
        action="store_true",
        default=None,
        help="gmp: learning-rate rewinding (Prune Once for All): the lr decay goes back to "
        "its value at the ramp's start at every pruning step (default: off)",
    )
    group.add_argument(
        "--teacher",
        default=None,
        help="distil from this model instead of the model before pruning: a hub id or a "
        "local model with the same vocabulary (pattern_lock: without it, the LM loss)",
    )
    group.add_argument(
        "--teacher-revision", default=None, help="the teacher's hub revision (default: main)"
    )
    group.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=_default(ts, "precision"),
        help="training precision: bf16 autocast with fp32 master weights, or fp32; auto: bf16 "
        "on a GPU with bf16 or a CPU with AMX/AVX512-BF16 (default: %(default)s)",
    )
    group.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=_default(ts, "gradient_checkpointing"),
        help="recompute layer activations in the backward: less memory, about a third more "
        "compute (default: auto, on only when the stage would not fit without it)",
    )
    group.add_argument(
        "--train-seed",
        type=int,
        default=_default(ts, "seed"),
        help="training window seed (default: %(default)s)",
    )
    group.add_argument(
        "--initial-sparsity",
        type=float,
        default=None,
        help="movement/gmp: the schedule's starting sparsity (default: 0)",
    )
    for flag, about in (
        ("--warmup-steps", "steps before pruning starts (default: 10%% of --train-steps)"),
        ("--prune-every", "steps between pruning steps (default: 1 for movement, the ramp / "
                          "10 for gmp)"),
        ("--cooldown-steps", "steps at the target, mask fixed, at the end (default: 20%%)"),
    ):  # fmt: skip
        group.add_argument(flag, type=int, default=None, help=f"movement/gmp: {about}")


SCHEDULE_FLAGS = ("initial_sparsity", "warmup_steps", "prune_every", "cooldown_steps")


def training_from_args(args: argparse.Namespace, steps: int, schedule: bool = False) -> dict:
    """The `training` (schedule fields included) or `recovery` object of the flags."""
    out = {
        "dataset": args.train_data,
        "steps": steps,
        "seqlen": args.train_seqlen,
        "batch_size": args.train_batch,
        "micro_batch": args.micro_batch,
        "lr": args.lr,
        "seed": args.train_seed,
        "precision": args.precision,
        "gradient_checkpointing": args.gradient_checkpointing,
    }
    if args.distill is not None:
        out["distill"] = args.distill
    if args.lm_weight is not None:
        out["lm_weight"] = args.lm_weight
    if args.kl_weight is not None:
        out["kl_weight"] = args.kl_weight
    if args.objective is not None:
        out["objective"] = args.objective
    if args.lr_rewind and schedule:
        out["lr_rewind"] = True
    if args.train_processes is not None:
        out["processes"] = args.train_processes
    for name in SCHEDULE_FLAGS if schedule else ():
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    return out


def add_option_args(group) -> None:
    """One flag per option field of the registered methods (shared names share a flag)."""
    seen: dict[str, list[str]] = {}
    fields = {}
    for method, model in METHODS.items():
        for name, info in model.model_fields.items():
            seen.setdefault(name, []).append(f"{method}, default {info.default}")
            fields.setdefault(name, info)
    for name, info in fields.items():
        kind: dict[str, Any] = {}
        args = typing.get_args(info.annotation)
        if typing.get_origin(info.annotation) is typing.Literal:
            kind["choices"] = list(args)
        elif info.annotation is bool:
            kind["action"] = argparse.BooleanOptionalAction
        elif info.annotation in (int, float):
            kind["type"] = info.annotation
        about = info.description or name.replace("_", " ")
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=OPTION_DEST + name,
            metavar=name.upper() if "choices" not in kind and "action" not in kind else None,
            default=None,
            help=f"{about} ({'; '.join(seen[name])})",
            **kind,
        )


def spec_from_args(args: argparse.Namespace) -> PruneSpec:
    """Build the spec in one validation, so every bad flag is named with its full field path
    (e.g. calibration.nsamples)."""
    evaluation = None
    if args.eval or args.eval_tasks:
        evaluation = {
            "dataset": args.eval or _default(EvalSpec, "dataset"),
            "seqlen": args.eval_seqlen or args.seqlen,
            "max_windows": args.eval_windows,
            "sample_tokens": args.eval_sample_tokens,
        }
        if args.eval_prompt is not None:
            evaluation["prompts"] = args.eval_prompt
    elif args.eval_prompt:
        raise SystemExit("error: --eval-prompt needs --eval DATASET (samples are part of it)")
    if args.eval_tasks:
        evaluation["tasks"] = [t.strip() for t in args.eval_tasks.split(",") if t.strip()]
        evaluation["task_limit"] = args.eval_task_limit
    options = {
        key.removeprefix(OPTION_DEST): value
        for key, value in vars(args).items()
        if key.startswith(OPTION_DEST) and value is not None
    }
    data = {
        "model": args.model,
        "revision": args.revision,
        "method": args.method,
        "sparsity": args.sparsity,
        "calibration": {
            "dataset": args.calibration,
            "nsamples": args.nsamples,
            "seqlen": args.seqlen,
            "seed": args.seed,
        },
        "evaluation": evaluation,
        "options": options,
        "skip": args.skip,
        "device": args.device,
        "dtype": args.dtype,
        "load": args.load,
        "checkpoint_layers": args.checkpoint_layers,
        "reconstruction": reconstruction_from_args(args),
        **profile_from_args(args),
    }
    trains = args.method in METHODS and METHODS[args.method].TRAINS
    if trains or args.train_steps is not None:
        steps = args.train_steps or _default(TrainingSpec, "steps")
        data["training"] = training_from_args(args, steps, schedule=True)
    if args.recover_steps:
        data["recovery"] = training_from_args(args, args.recover_steps)
    if args.lr_rewind and "training" not in data:
        raise SystemExit("error: --lr-rewind rewinds at gmp's pruning steps (--method gmp)")
    if args.teacher:
        data["teacher"] = {"model": args.teacher, "revision": args.teacher_revision}
    return PruneSpec.model_validate(data)  # a ValidationError names every bad field
