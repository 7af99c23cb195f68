"""The training stages: the method's own training (learn) and recovery, both one use of the
training engine, and the checks that they fit the device before any work.
"""

from __future__ import annotations

import torch

from service.schemas import (
    PruneSpec,
    TrainingReport,
    TrainingSpec,
    resume_dir,
)
from worker.engine.data import calibration
from worker.engine.errors import SpecError
from worker.engine.methods import get_method
from worker.engine.model.model_io import (
    get_weight,
)
from worker.engine.stages.state import Run, given, pattern_of, run_key
from worker.engine.train import memory as train_memory
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.distributed import train_processes, train_sharded
from worker.engine.train.loop import LoopConfig, train
from worker.engine.train.objective import Objective
from worker.engine.train.precision import compute_dtype, name_of
from worker.engine.train.schedule import Schedule
from worker.engine.train.tasks import Recovery, TaskInputs


def schedule_of(spec: PruneSpec) -> Schedule | None:
    """The cubic pruning schedule of the methods that prune while training (else None)."""
    if not spec.method_options.prunes_on_schedule():
        return None
    ts = given(spec.training, "training")
    t0, dt, n, _ = ts.schedule_steps(spec.method_options.prune_every())
    return Schedule(ts.initial_sparsity, spec.parsed_sparsity.ratio, t0, dt, n)


def learn(run: Run) -> None:
    """The method's own training (SMP's learned mask; movement, gmp)."""
    spec = run.spec
    method = get_method(spec.method)
    dense = run.dense
    inputs = TaskInputs(
        modules=trainable(run.modules),
        masks=run.masks,
        scores=run.scores,
        pattern=pattern_of(spec),
        options=spec.method_options,
        schedule=schedule_of(spec),
        dense_weight=lambda name: get_weight((dense or run.model).get_submodule(name)),
    )
    assert method.task is not None, "a method that learns has a training task"
    task = method.task(inputs)
    run_training(run, given(spec.training, "training"), task)
    summary = getattr(task, "summary", None)  # a task's line for the report, if it has one
    if summary is not None:
        run.warn(summary(run.masks))


def recover(run: Run) -> None:
    task = Recovery(trainable(run.modules), run.masks)
    run_training(run, given(run.spec.recovery, "recovery"), task)


def trainable(modules: dict) -> dict:
    """The Linears a training stage can parametrize; fused MoE expert slices keep their
    one-shot mask and weights."""
    return {n: m for n, m in modules.items() if isinstance(m, torch.nn.Module)}


def run_training(run: Run, ts: TrainingSpec, task) -> None:
    """One use of the training engine; its masks replace the mask state's."""
    source = run.sources[task.stage]
    windows = calibration.training_windows(
        run.tokenizer,
        ts.dataset,
        source,
        ts.steps * ts.batch_size,
        ts.seqlen,
        ts.seed,
        ts.holdout,
        "training" if task.stage == "train" else "recovery",
        run.reporter.check_cancel,
    )
    run.reporter.check_cancel()  # the text may have taken a while to read and tokenize
    objective = Objective(ts.distill, ts.temperature, ts.lm_weight, ts.kl_weight)
    cfg = LoopConfig(
        steps=ts.steps,
        batch_size=ts.batch_size,
        micro_batch=ts.micro_batch,
        lr=ts.lr or task.default_lr,
        warmup_steps=ts.lr_warmup_steps if ts.lr_warmup_steps is not None else ts.steps // 10,
        weight_decay=ts.weight_decay,
        checkpoint_every=ts.checkpoint_every,
        precision=ts.precision,
        checkpointing=run.checkpointing.get(task.stage, False),
        lr_rewind=lr_rewind_of(ts, getattr(task, "schedule", None)),
    )
    teacher = (run.teacher or run.dense) if ts.distill else None  # train() holds it on the device
    processes = train_processes(ts, run.device) if task.stage == "recover" else 1
    ranks = processes > 1 or ts.offload != "none"  # CPU offload runs through the FSDP ranks
    on_device = run.device.type != "cpu" and not ranks  # ranks place their own shards
    if on_device:
        run.model.to(run.device)
    checkpoints = Checkpoints(resume_dir(run.where.output), task.stage, run_key(run.spec))
    try:
        if ranks:
            if windows.labels(0, 1) is not None:
                raise SpecError(
                    "recovery.processes, recovery.offload: training records with answer-only "
                    "loss (chat, prompt/completion) train in one process without offload; set "
                    "recovery.processes to 1 and recovery.offload to none"
                )
            how = (objective, cfg, run.reporter, checkpoints, processes, run.device, ts.offload)
            ids = windows.rows(0, len(windows))  # the ranks take every window at once
            result = train_sharded(run.model, teacher, ids, task, *how)
        else:
            result = train(
                run.model, teacher, windows, task, objective, cfg, run.reporter, checkpoints
            )
    finally:
        if on_device:
            run.model.to("cpu")
    pattern = pattern_of(run.spec)
    for name, mask in result.masks.items():
        run.masks.record(name, mask, pattern)
    run.last_changed = task.stage
    run.report.training.append(
        TrainingReport(
            stage=task.stage,
            dataset=ts.dataset,
            split=split_note(ts, source),
            steps=ts.steps,
            seqlen=ts.seqlen,
            batch_size=ts.batch_size,
            tokens=(ts.steps - result.resumed_from_step) * ts.batch_size * ts.seqlen,
            trainable=task.trainable,
            trainable_params=result.trainable_params,
            objective=objective_note(ts, objective) + lm_note(run.spec, ts),
            teacher=teacher_note(run, teacher, result.precision),
            lr=cfg.lr,
            loss=result.loss,
            time_per_step_s=result.time_per_step_s,
            resumed_from_step=result.resumed_from_step,
            precision=result.precision,
            gradient_checkpointing=result.checkpointing,
        )
    )


def split_note(ts: TrainingSpec, source) -> str:
    name = str(getattr(source, "name", "hub rows"))
    if ts.dataset in calibration.NAMED or ts.holdout == 0:
        return name
    return f"{name}, {1 - ts.holdout:.0%} of its blocks (the rest held out, seed {ts.seed})"


def teacher_note(run: Run, teacher, precision: str) -> str | None:
    if teacher is None:
        return None
    dtype = "bfloat16" if precision == "bf16" else run.report.dtype
    t = run.spec.teacher
    who = "the dense model before pruning" if t is None else f"teacher {t.model}"
    return f"{who}{'@' + t.revision if t and t.revision else ''}, {dtype}, {run.device.type}"


def lr_rewind_of(ts: TrainingSpec, schedule: Schedule | None) -> tuple[int, int, int] | None:
    """The pruning steps the learning rate rewinds at (training.lr_rewind), else None."""
    return schedule.rewind if ts.lr_rewind and schedule is not None else None


def objective_note(ts: TrainingSpec, objective: Objective) -> str:
    """The objective as the report gives it, with the preset's name when one was asked."""
    return f"{ts.objective}: {objective.describe()}" if ts.objective else objective.describe()


def lm_note(spec: PruneSpec, ts: TrainingSpec) -> str:
    """Why a method whose input teaches nothing trains on the LM loss (no teacher named)."""
    if spec.method_options.SELF_TEACHER and spec.teacher is None and not ts.distill:
        why = f"{spec.method}'s model before pruning is the input itself, so the LM loss"
        return f" (no teacher: {why}; name teacher.model to distil)"
    return ""


def needs_dense_copy(spec: PruneSpec) -> bool:
    """A teacher for distillation (unless `spec.teacher` names one), or the dense weights a
    learned mask keeps (SMP: the walk zeroed them)."""
    walks = spec.method_options.walks()
    own = spec.teacher is None
    learns = spec.training is not None and ((spec.training.distill and own) or walks)
    return learns or (spec.recovery is not None and spec.recovery.distill and own)


def check_training_fits(run: Run, shapes: dict) -> None:
    """Before any work: the teacher copy, optimizer state and activations fit the device.
    Gradient checkpointing left to the default is turned on only for a stage that would not
    fit without it (it costs about a third more compute)."""
    trainable = sum(a * b for a, b in shapes.values())
    shape = train_memory.ModelShape.of(run.model)
    for stage, ts in (("train", run.spec.training), ("recover", run.spec.recovery)):
        if ts is None:
            continue
        # recovery trains only the kept weights; with offload cpu their state is on the host
        kept = 1 - run.spec.parsed_sparsity.ratio if stage == "recover" else 1.0
        offloaded = ts.offload == "cpu" and run.device.type != "cpu"
        here = 0 if offloaded else int(trainable * kept)

        def need(checkpointing: bool, ts=ts, here=here):
            return train_memory.training_memory(
                shape,
                here,
                teacher=needs_dense_copy(run.spec) or run.spec.teacher is not None,
                precision=name_of(compute_dtype(ts.precision, run.device)),
                checkpointing=checkpointing,
                micro_batch=ts.micro_batch,
                seqlen=ts.seqlen,
                dense_copy_here=run.device.type == "cpu",
            ).extra

        on = ts.gradient_checkpointing
        if on is None:
            on = need(False) > train_memory.available_bytes(run.device)
        run.checkpointing[stage] = on
        train_memory.check_fits(need(on), run.device, f"training stage {stage!r}")
