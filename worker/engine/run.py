"""run(spec) -> PruneReport: a stage plan (load, calibrate, evaluate dense?, prune, evaluate
pruned?, save), each stage a small function. The only engine file that reads the contract.
"""

from __future__ import annotations

import copy
import fnmatch
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from service.schemas import (
    Perplexity,
    PruneReport,
    PruneSpec,
    Samples,
    TaskResult,
    TrainingReport,
    TrainingSpec,
    partial_dir,
    resume_dir,
)
from worker.engine import calibration, outputs, report, samples, walk_resume
from worker.engine.errors import CalibrationError, SpecError, UnsupportedModelError
from worker.engine.evaluate import perplexity
from worker.engine.experts import expert_targets, router_linears
from worker.engine.file_mode import set_file_modes
from worker.engine.lazy import LazyUnsupported, checkpoint_bytes, open_lazy
from worker.engine.mask_state import MaskState, check_fits
from worker.engine.masks import Pattern
from worker.engine.memory import peak_rss_mb, release
from worker.engine.methods import get_method
from worker.engine.model_io import (
    DTYPES,
    check_model_dir,
    decoder_coverage,
    decoder_layers,
    get_weight,
    load_model,
    load_tokenizer,
    locate_model,
    matrix_counts,
    prunable_linears,
    save_model,
)
from worker.engine.owl import OWLAllocator, outlier_ratio
from worker.engine.progress import Reporter
from worker.engine.pruner import DSnoTRefiner, Pruner
from worker.engine.reconstruct import Reconstructor
from worker.engine.streaming import LayerStreamer
from worker.engine.tasks_eval import eval_tasks, resolve_tasks
from worker.engine.teacher import load_teacher
from worker.engine.train import memory as train_memory
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.distributed import train_processes, train_sharded
from worker.engine.train.loop import LoopConfig, train
from worker.engine.train.objective import Objective
from worker.engine.train.precision import compute_dtype, name_of
from worker.engine.train.schedule import Schedule
from worker.engine.train.soft_movement import soft_summary
from worker.engine.train.tasks import Recovery, TaskInputs
from worker.engine.walk_resume import WalkCheckpoints, WalkState
from worker.engine.walker import survey, walk

UNPRUNED_WARN = 0.10  # a pattern leaving more of the decoder weights dense is a warning
LAZY_SHARE = 0.5  # auto loads lazily when the weights exceed this share of available memory


@dataclass
class Where:
    """Where a run reads and writes (the service pins these; local runs take defaults)."""

    output: Path
    data_dir: Path | None = None
    upload_dir: Path | None = None
    models_dir: Path | None = None  # the service's MODELS_DIR; None for local runs
    cache_dir: Path | None = None
    allow_local: bool = True  # a model name may be any local directory (never in the service)
    tasks_dir: Path | None = None  # the service's TASKS_DIR: local lm-eval task directories


@dataclass
class Run:
    """What the stages share."""

    spec: PruneSpec
    where: Where
    reporter: Reporter
    device: torch.device
    report: PruneReport
    masks: MaskState = field(default_factory=MaskState)
    sources: dict[str, Path | str] = field(default_factory=dict)
    source: Path | None = None  # the model's directory (the card reads its license)
    model: object = None
    tokenizer: object = None
    streamer: LayerStreamer | None = None
    targets: list[dict] = field(default_factory=list)
    ids: torch.Tensor | None = None
    eval_ids: torch.Tensor | None = None
    heldout_ids: torch.Tensor | None = None  # the held-out part of a user's training corpus
    checkpointing: dict[str, bool] = field(default_factory=dict)  # per training stage
    heldout_labels: torch.Tensor | None = None  # its scored tokens (records: the answers)
    dense: object = None  # a copy of the model before pruning (teacher, SMP's frozen weights)
    teacher: object = None  # `spec.teacher`, when one is named
    scores: dict = field(default_factory=dict)  # learned-mask methods: initial scores by name
    results: list = field(default_factory=list)  # what pruning measured per module
    layer_sparsity: list = field(default_factory=list)  # OWL: what each layer was given
    last_changed: str = "prune"  # the last stage that changed weights (for perplexity)
    checks: dict = field(default_factory=dict)  # lazy mode: mask checks, as layers are written
    counts: tuple[int, int] = (0, 0)  # lazy mode: (weights, zeros) of the decoder's matrices
    walk_checkpoints: WalkCheckpoints | None = None
    resume: WalkState | None = None  # the walk's saved state, when a killed job restarts

    @property
    def modules(self) -> dict:
        """Every pruned module by full name, in pruning order."""
        return {n: m for per_layer in self.targets for n, m in per_layer.items()}

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)
        self.reporter.warn(message)

    @property
    def n_layers(self) -> int:
        return len(self.streamer.layers) if self.streamer else 0


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[Run], None]
    weight: float  # share of the job's overall percent, relative to the other stages
    steps: Callable[[Run], int] = lambda r: 0  # units of progress (layers for prune)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' was asked for but CUDA is not available; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def pattern_of(spec: PruneSpec) -> Pattern:
    s = spec.parsed_sparsity
    return Pattern(s.ratio, s.n, s.m)


# -- stages --------------------------------------------------------------------------------
def load(run: Run) -> None:
    """Load the model; choose what to prune and check the pattern fits it, before any work."""
    spec = run.spec
    path = locate_model(
        spec.model, spec.revision, models_dir=run.where.models_dir,
        cache_dir=run.where.cache_dir, allow_local=run.where.allow_local,
    )  # fmt: skip
    run.source = path
    run.walk_checkpoints = WalkCheckpoints(resume_dir(run.where.output), run_key(spec),
                                           spec.checkpoint_layers)  # fmt: skip
    if spec.method_options.walks():
        run.resume = run.walk_checkpoints.load()
    weights = open_model(run, path)
    layers_name, layers = decoder_layers(run.model)
    run.streamer = LayerStreamer(run.model, layers, run.device, weights)
    if run.resume is not None:
        resume_layers(run)
    every = [layer_targets(layer, f"{layers_name}.{i}") for i, layer in enumerate(layers)]
    run.targets = skip(every, spec.skip)
    shapes = {n: tuple(get_weight(m).shape) for t in run.targets for n, m in t.items()}
    check_fits(shapes, pattern_of(spec))
    check_training_fits(run, shapes)
    if needs_dense_copy(spec):
        run.dense = copy.deepcopy(run.model)
    if spec.teacher is not None:
        run.teacher = load_teacher(spec, run.where, run.model)
    run.report.architecture = type(run.model).__name__
    run.report.dtype = str(next(run.model.parameters()).dtype).removeprefix("torch.")
    run.report.n_layers = len(layers)
    if weights is not None:
        weights.on_commit = lambda i, layer: check_layer(run, i, layer)


def open_model(run: Run, path: Path):
    """Load eagerly (run.model whole in memory; returns None) or lazily (a meta skeleton with
    its shell; returns the LazyWeights that stream the layers), as `spec.load` says."""
    spec = run.spec
    check_model_dir(path)
    mode, why = choose_load(spec, path)
    if run.resume is not None:  # the layers already written are where that mode put them
        mode, why = run.resume.meta["load"], "as before the restart"
    if mode == "lazy":
        partial = partial_dir(run.where.output)
        if run.resume is None:
            shutil.rmtree(partial, ignore_errors=True)
        try:
            run.model, weights = open_lazy(path, DTYPES.get(spec.dtype), decoder_layers, partial)
        except LazyUnsupported as exc:
            if spec.load == "lazy":
                raise UnsupportedModelError(f"load 'lazy': {exc}; use load 'eager'") from None
            run.warn(f"loading eagerly: this model cannot be streamed a layer at a time ({exc})")
        else:
            # saved now, dropped before the walk (held through it, it costs ~50 MB of memory)
            run.tokenizer = load_tokenizer(path)
            run.tokenizer.save_pretrained(partial)
            run.report.load = f"lazy ({why})"
            return weights
    run.model, run.tokenizer = load_model(path, spec.dtype)
    run.report.load = f"eager ({why})" if mode == "eager" else "eager"
    return None


def resume_layers(run: Run) -> None:
    """A restarted job: the layers the walk finished come back as they were written (the
    lazy output's shards, or the eager checkpoint's layer files), with the report so far."""
    state, weights = run.resume, run.streamer.weights
    if weights is not None:
        lazy = state.meta["lazy"]
        weights.written.update(lazy["written"])
        weights.total_size = lazy["total_size"]
        weights.committed.update(lazy["committed"])
    else:
        for i in range(state.next_layer):
            run.walk_checkpoints.load_layer(i, run.streamer.layers[i])
    saved = state.meta["report"]
    for key, kind in (("perplexity", Perplexity), ("heldout", Perplexity), ("samples", Samples)):
        if saved.get(key) is not None:
            setattr(run.report, key, kind.model_validate(saved[key]))
    run.report.tasks = [TaskResult.model_validate(t) for t in saved.get("tasks", [])]
    run.report.warnings[:0] = [w for w in saved["warnings"] if w not in run.report.warnings]
    run.report.resumed_at_layer = state.next_layer
    run.reporter.warn(f"resuming the walk at layer {state.next_layer} of the previous attempt")


def choose_load(spec: PruneSpec, path: Path) -> tuple[str, str]:
    """('eager' | 'lazy', why): lazy when asked, or (auto) when the weights would take more
    than LAZY_SHARE of the available memory and no training stage needs the whole model."""
    if spec.load != "auto":
        return spec.load, "asked for"
    if spec.training is not None or spec.recovery is not None:
        return "eager", "training needs the whole model"
    if spec.evaluation is not None and spec.evaluation.tasks:
        return "eager", "task evaluation needs the whole model"
    try:
        need = checkpoint_bytes(path, DTYPES.get(spec.dtype))
        have = train_memory.available_bytes(torch.device("cpu"))  # cgroup-bounded
    except LazyUnsupported:
        return "eager", "the weights' size could not be read"
    sizes = f"weights {need / 2**30:.2f} GiB, {have / 2**30:.2f} GiB available"
    return ("lazy" if need > LAZY_SHARE * have else "eager"), sizes


def check_layer(run: Run, i: int, layer) -> None:
    """Lazy mode: layer i is about to be written; its masks are checked now (its weights
    leave memory after) and its matrices counted for the decoder's sparsity."""
    modules = run.modules
    names = [n for n in run.targets[i] if n in run.masks.modules]
    for c in run.masks.check(lambda name: get_weight(modules[name]), names):
        run.checks[c.name] = c
    total, zeros = matrix_counts(layer)
    run.counts = (run.counts[0] + total, run.counts[1] + zeros)


def layer_targets(layer, prefix: str) -> dict:
    """What to prune in one decoder layer: its Linears but the MoE routers (they stay dense),
    and each expert of its fused MoE parameters as its own matrix."""
    linears = prunable_linears(layer, prefix)
    routers = router_linears(layer, prefix, linears)
    return {**{n: m for n, m in linears.items() if n not in routers},
            **expert_targets(layer, prefix)}  # fmt: skip


def calibrate(run: Run) -> None:
    cal = run.spec.calibration
    run.ids = calibration.calibration_ids(
        run.tokenizer, cal.dataset, run.sources["calibration"], cal.nsamples, cal.seqlen, cal.seed,
        check=run.reporter.check_cancel,
    )  # fmt: skip


def eval_dense(run: Run) -> None:
    ev = run.spec.evaluation
    run.eval_ids = calibration.eval_ids(run.tokenizer, run.sources["evaluation"])
    held = heldout_spec(run.spec)
    if held is not None:
        stage, ts = held
        held_out = calibration.heldout_ids(run.tokenizer, run.sources[stage], ts.holdout, ts.seed)
        run.heldout_ids, run.heldout_labels = held_out or (None, None)
    if run.resume is not None and run.report.perplexity is not None:
        return  # measured before the restart
    ppl, windows = perplexity(run.streamer, run.eval_ids, ev.seqlen, ev.max_windows, run.reporter)
    run.report.perplexity = Perplexity(
        dataset=ev.dataset, seqlen=ev.seqlen, windows=windows, dense=round(ppl, 4)
    )
    sample(run, "dense")
    if held is None:
        return
    ids = run.heldout_ids
    if ids is None:
        field = {"train": "training", "recover": "recovery"}[stage]
        run.warn(f"{field}.holdout {ts.holdout:g}: {ts.dataset} is one block (one line or one "
                 "document), so nothing could be held out and there is no held-out perplexity; "
                 f"give it several paragraphs or lines, or set {field}.holdout 0")  # fmt: skip
        return
    seqlen = min(ev.seqlen, ids.shape[1] - 1)
    if seqlen < 8:
        run.warn(f"the held-out {ts.holdout:.0%} of {ts.dataset} has {ids.shape[1]} tokens, "
                 "too few for a held-out perplexity")  # fmt: skip
        run.heldout_ids = None
        return
    labels = run.heldout_labels
    ppl, windows = perplexity(run.streamer, ids, seqlen, ev.max_windows, run.reporter, labels)
    scored = ", the answers' tokens" if labels is not None and (labels == -100).any() else ""
    run.report.heldout = Perplexity(
        dataset=f"{ts.dataset} (held-out {ts.holdout:.0%}, seed {ts.seed}{scored})", seqlen=seqlen,
        windows=windows, dense=round(ppl, 4),
    )  # fmt: skip


def heldout_spec(spec: PruneSpec) -> tuple[str, TrainingSpec] | None:
    """The training stage whose user corpus is split into training and held-out parts."""
    for stage, ts in (("train", spec.training), ("recover", spec.recovery)):
        if ts is not None and ts.holdout > 0 and ts.dataset not in calibration.NAMED:
            return stage, ts
    return None


def stats_needed(spec: PruneSpec) -> str | None:
    """The statistics the walk collects: the method's, at least column norms and means when
    OWL or DSnoT read them or reconstruction needs the calibration activations."""
    needs = get_method(spec.method).stats_for(spec.method_options)
    reads = spec.sparsity_profile != "uniform" or spec.refine != "none"
    if needs is None and (reads or spec.reconstruction is not None):
        return "norms"
    return needs


def prune(run: Run) -> None:
    spec = run.spec
    method = get_method(spec.method)
    profile = refine = None
    if spec.sparsity_profile == "owl":
        owl = run.resume.meta["owl"] if run.resume is not None else None
        profile = owl_profile(run, owl["ratios"] if owl else None)
    if spec.refine == "dsnot":
        d = spec.dsnot
        refine = DSnoTRefiner(d.max_cycles, d.update_threshold, d.var_power)
    pruner = Pruner(method, pattern_of(spec), spec.method_options, run.masks, run.warn,
                    profile=profile, refine=refine)  # fmt: skip
    recon = None
    if spec.reconstruction is not None:
        recon = Reconstructor(spec.reconstruction, run.masks, run.reporter)
    start, start_inps = 0, None
    if run.resume is not None:
        walk_resume.restore(run, pruner, run.resume)
        if recon is not None:
            recon.load_state(run.resume.tensors, run.resume.meta["recon"])
        start, start_inps = run.resume.next_layer, run.resume.inps
        run.resume = None
    ck, lazy = run.walk_checkpoints, run.streamer.lazy
    if lazy:  # every text is tokenized by now, and the output holds the tokenizer's files
        run.tokenizer = None
        release()
    saved = [start]  # eager mode: layers below this are in the checkpoint's layer files

    def after_layer(i: int, inps, layer) -> None:
        if not ck.due(i + 1, run.n_layers):
            return
        if not lazy:  # the finished layers are still in memory: written now, once each
            for j in range(saved[0], i + 1):
                ck.save_layer(j, run.streamer.layers[j])
            saved[0] = i + 1
        pruner.end_layer()
        state = walk_resume.snapshot(run, pruner, i + 1, inps)
        if recon is not None:  # the dense stream (dense_input) and the blocks' reports
            tensors, state.meta["recon"] = recon.state()
            state.tensors.update(tensors)
        ck.save(state)

    walk(run.streamer, run.ids, stats_needed(spec), run.targets, pruner, run.reporter,
         warn=run.warn, begin_layer=pruner.begin_layer, start=start, start_inps=start_inps,
         after_layer=after_layer, recon=recon)  # fmt: skip
    pruner.end_layer()
    if recon is not None:
        run.report.reconstruction = recon.blocks
        run.last_changed = "reconstruct"
    run.results = pruner.results
    run.scores = pruner.scores
    run.layer_sparsity = profile.layers if profile else []


def owl_profile(run: Run, saved: list[float] | None = None) -> OWLAllocator:
    """Every layer's outlier ratio from a dense survey of the first `owl.samples` calibration
    windows (or as `saved` before a restart), then the allocation (see owl.py for why not
    from the walk itself)."""
    spec = run.spec
    sizes = [sum(get_weight(m).numel() for m in t.values()) for t in run.targets]
    if saved is not None:
        return OWLAllocator(spec.parsed_sparsity.ratio, spec.owl.lam, sizes, saved)
    ratios = [0.0] * len(run.targets)

    def visit(i: int, groups) -> None:
        pairs = [(w, st) for _, ws, st in groups for w in ws]
        ratios[i] = outlier_ratio([w for w, _ in pairs], [st for _, st in pairs], spec.owl.m)

    survey(run.streamer, run.ids[: spec.owl.samples], run.targets, visit, run.reporter)
    return OWLAllocator(spec.parsed_sparsity.ratio, spec.owl.lam, sizes, ratios)


def eval_pruned(run: Run) -> None:
    ev = run.spec.evaluation
    for ids, labels, result in (
        (run.eval_ids, None, run.report.perplexity),
        (run.heldout_ids, run.heldout_labels, run.report.heldout),
    ):
        if ids is None or result is None:
            continue
        ppl, _ = perplexity(run.streamer, ids, result.seqlen, ev.max_windows, run.reporter, labels)
        result.pruned = round(ppl, 4)
        result.after[run.last_changed] = round(ppl, 4)
    sample(run, run.last_changed)


def sample(run: Run, stage: str) -> None:
    """The evaluation prompts' greedy continuations after `stage` (none when no prompts)."""
    ev = run.spec.evaluation
    if ev.prompts:  # lazy runs drop the tokenizer for the walk; its files are in the output
        tokenizer = run.tokenizer or load_tokenizer(partial_dir(run.where.output))
        texts = samples.continuations(run.streamer, tokenizer, ev, run.reporter)
        run.report.samples = samples.record(run.report.samples, ev, stage, texts)


def schedule_of(spec: PruneSpec) -> Schedule | None:
    """The cubic pruning schedule of the methods that prune while training (else None)."""
    if not spec.method_options.prunes_on_schedule():
        return None
    ts = spec.training
    t0, dt, n, _ = ts.schedule_steps(spec.method_options.prune_every())
    return Schedule(ts.initial_sparsity, spec.parsed_sparsity.ratio, t0, dt, n)


def learn(run: Run) -> None:
    """The method's own training (SMP's learned mask; movement, gmp)."""
    spec = run.spec
    method = get_method(spec.method)
    dense = run.dense
    inputs = TaskInputs(
        modules=trainable(run.modules), masks=run.masks, scores=run.scores,
        pattern=pattern_of(spec), options=spec.method_options, schedule=schedule_of(spec),
        dense_weight=lambda name: get_weight((dense or run.model).get_submodule(name)),
    )  # fmt: skip
    run_training(run, spec.training, method.task(inputs))
    if spec.method == "movement" and spec.method_options.movement_soft:
        run.warn(soft_summary(run.masks, spec.method_options.movement_threshold))


def recover(run: Run) -> None:
    run_training(run, run.spec.recovery, Recovery(trainable(run.modules), run.masks))


def trainable(modules: dict) -> dict:
    """The Linears a training stage can parametrize; fused MoE expert slices keep their
    one-shot mask and weights."""
    return {n: m for n, m in modules.items() if isinstance(m, torch.nn.Module)}


def run_training(run: Run, ts: TrainingSpec, task) -> None:
    """One use of the training engine; its masks replace the mask state's."""
    source = run.sources[task.stage]
    windows = calibration.training_windows(
        run.tokenizer, ts.dataset, source, ts.steps * ts.batch_size, ts.seqlen, ts.seed,
        ts.holdout, "training" if task.stage == "train" else "recovery", run.reporter.check_cancel,
    )  # fmt: skip
    run.reporter.check_cancel()  # the text may have taken a while to read and tokenize
    objective = Objective(ts.distill, ts.temperature, ts.lm_weight, ts.kl_weight)
    cfg = LoopConfig(
        steps=ts.steps, batch_size=ts.batch_size, micro_batch=ts.micro_batch,
        lr=ts.lr or task.default_lr,
        warmup_steps=ts.lr_warmup_steps if ts.lr_warmup_steps is not None else ts.steps // 10,
        weight_decay=ts.weight_decay, checkpoint_every=ts.checkpoint_every,
        precision=ts.precision, checkpointing=run.checkpointing.get(task.stage, False),
        lr_rewind=lr_rewind_of(ts, getattr(task, "schedule", None)),
    )  # fmt: skip
    teacher = (run.teacher or run.dense) if ts.distill else None  # train() holds it on the device
    processes = train_processes(ts, run.device) if task.stage == "recover" else 1
    on_device = run.device.type != "cpu" and processes == 1  # ranks place their own shards
    if on_device:
        run.model.to(run.device)
    checkpoints = Checkpoints(resume_dir(run.where.output), task.stage, run_key(run.spec))
    try:
        if processes > 1:
            if windows.labels(0, 1) is not None:
                raise SpecError(
                    "recovery.processes: training records with answer-only loss (chat, "
                    "prompt/completion) train in one process; set recovery.processes to 1"
                )
            how = (objective, cfg, run.reporter, checkpoints, processes, run.device)
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
        )  # fmt: skip
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


def run_key(spec: PruneSpec) -> str:
    """Ties a training checkpoint to the spec that made it."""
    import hashlib

    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


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

        def need(checkpointing: bool, ts=ts):
            return train_memory.training_memory(
                shape,
                trainable,
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


def save(run: Run) -> None:
    """The final checks on the mask state, then the checkpoint."""
    modules = run.modules
    weights = run.streamer.weights
    if weights is not None:  # each layer was checked as it was written; the rest now
        weights.finish(run.device)
        checks = [run.checks[name] for name, _ in run.masks]
        counts = run.counts
    else:
        checks = run.masks.check(lambda name: get_weight(modules[name]))
        counts = matrix_counts(run.streamer.layers)
    report.add_masks(run.report, checks, run.results)
    if run.layer_sparsity:
        layer_of = {n: i for i, t in enumerate(run.targets) for n in t}
        report.add_layers(run.report, run.layer_sparsity, layer_of)
    pruned = sum(c.shape[0] * c.shape[1] for c in checks)
    run.report.decoder_sparsity, unpruned = decoder_coverage(counts, pruned)
    if unpruned > UNPRUNED_WARN:
        run.warn(
            f"{unpruned:.0%} of the decoder weights are not pruned (skipped, routers or "
            f"unsupported modules); sparsity over all decoder weights is "
            f"{run.report.decoder_sparsity:.3f}"
        )
    if weights is None:
        run.reporter.check_cancel()  # before the longest write
        save_model(run.model, run.tokenizer, partial_dir(run.where.output))
    # lazy: the tokenizer's files were written at load, the weights by `finish`


def plan(spec: PruneSpec) -> list[Stage]:
    """The stages this spec needs, in order."""
    evaluate = spec.evaluation is not None
    stages = [Stage("load", load, 5)]
    if stats_needed(spec) is not None:
        stages.append(Stage("calibrate", calibrate, 5))
    tasks = evaluate and bool(spec.evaluation.tasks)
    if evaluate:
        stages.append(Stage("eval_dense", eval_dense, 15))
    if tasks:
        stages.append(Stage("eval_tasks_dense", partial(eval_tasks, which="dense"), 15))
    if spec.method_options.walks():  # some prune only while training
        stages.append(Stage("prune", prune, 60, steps=lambda r: r.n_layers))
    for name, fn, ts in (("train", learn, spec.training), ("recover", recover, spec.recovery)):
        if ts is None:
            continue
        if evaluate and stages[-1].name in ("prune", "train"):  # after each that changed weights
            stages.append(Stage(f"eval_{stages[-1].name}", eval_pruned, 10))
        stages.append(Stage(name, fn, 0.6 * ts.steps, steps=lambda r, n=ts.steps: n))
    if evaluate:
        stages.append(Stage("eval_pruned", eval_pruned, 10))
    if tasks:
        stages.append(Stage("eval_tasks", partial(eval_tasks, which="pruned"), 15))
    stages.append(Stage("save", save, 5))
    return stages


def spans(stages: list[Stage]) -> list[tuple[float, float]]:
    """(start, end) of the job's overall percent for each stage, by weight."""
    total, at, out = sum(s.weight for s in stages), 0.0, []
    for s in stages:
        end = at + 100.0 * s.weight / total
        out.append((round(at, 1), round(end, 1)))
        at = end
    return out


# -- the run -------------------------------------------------------------------------------
def run(
    spec: PruneSpec,
    output: Path,
    *,
    reporter: Reporter | None = None,
    data_dir: Path | None = None,
    upload_dir: Path | None = None,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    allow_local: bool = True,
    tasks_dir: Path | None = None,
) -> PruneReport:
    """Prune `spec.model` and write the checkpoint plus pruning_report.json to `output`.

    `spec.model` is a model under `models_dir` (the service), a local directory (local runs,
    if `allow_local`) or a hub id.
    """
    where = Where(Path(output), data_dir, upload_dir, models_dir, cache_dir, allow_local, tasks_dir)
    if where.output.exists():
        raise SpecError(f"output {output} already exists; choose a new directory or remove it")
    get_method(spec.method)
    device = pick_device(spec.device)
    reporter = reporter or Reporter()
    state = Run(spec, where, reporter, device, report.new_report(spec, str(device)))
    locate_model(spec.model, spec.revision, models_dir=models_dir, allow_local=allow_local,
                 fetch=False)  # fmt: skip
    state.sources = datasets(spec, where)  # missing files are reported before the slow load
    if spec.evaluation is not None:  # and local task directories
        resolve_tasks(spec.evaluation.tasks, tasks_dir, allow_local)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages = plan(spec)
    for stage, span in zip(stages, spans(stages), strict=True):
        release()
        reporter.check_cancel()  # every stage checks inside too: layers, windows, steps
        reporter.stage(stage.name, stage.steps(state), span)
        t0 = time.perf_counter()
        stage.fn(state)
        state.report.stages_s[stage.name] = round(time.perf_counter() - t0, 3)
    reporter.check_cancel()  # the last chance: nothing is published yet
    finish(state)
    return state.report


def datasets(spec: PruneSpec, where: Where) -> dict[str, Path | str]:
    named = [(f, getattr(spec, f)) for f in ("training", "recovery", "calibration", "evaluation")]
    for part_name, part in named:
        name = part.dataset if part is not None else None
        local = name and name not in calibration.NAMED and not name.startswith("upload:")
        if local and not where.allow_local:  # the service's boundary checks this too
            raise SpecError(f"{part_name}.dataset: {name!r} is a file path; a service job reads "
                            "only wikitext2, c4 or upload:<id>")  # fmt: skip
    trains = [("train", "training", spec.training), ("recover", "recovery", spec.recovery)]
    # a named dataset trains on its calibration split, never on eval
    reads = [(stage, f, ts.dataset, "calibration") for stage, f, ts in trains if ts is not None]
    if stats_needed(spec) is not None:
        reads.append(("calibration", "calibration", spec.calibration.dataset, "calibration"))
    if spec.evaluation is not None:
        reads.append(("evaluation", "evaluation", spec.evaluation.dataset, "evaluation"))
    out = {}
    for stage, part, name, split in reads:
        try:
            out[stage] = calibration.resolve_dataset(name, split, where.data_dir, where.upload_dir)
        except CalibrationError as exc:  # name the field: its value may be a default
            raise CalibrationError(f"{part}.dataset: {exc}") from None
    return out


def finish(run: Run) -> None:
    """Write the report, card and plots once into the saved checkpoint, then publish it under
    `output`."""
    run.report.peak_rss_mb = round(peak_rss_mb(), 1)
    if run.device.type == "cuda":
        run.report.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    partial = partial_dir(run.where.output)
    outputs.write(run.report, partial, run.source)
    set_file_modes(partial)
    partial.rename(run.where.output)
    shutil.rmtree(resume_dir(run.where.output), ignore_errors=True)


def skip(linears: list[dict], patterns: list[str]) -> list[dict]:
    """`linears` (per layer: full name -> module) minus names matching a `patterns` glob; a
    pattern that matches nothing is an error that shows real names."""
    names = [n for per_layer in linears for n in per_layer]
    unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
    if unmatched:
        examples = ", ".join(names[i] for i in sorted({0, 1, len(names) // 2, len(names) - 1}))
        raise SpecError(
            f"skip pattern(s) {', '.join(map(repr, unmatched))} match no prunable module; "
            f"patterns are fnmatch globs over full module names, e.g. {examples} "
            "(so '*.mlp.*' keeps every MLP Linear dense)"
        )
    return [
        {n: m for n, m in per_layer.items() if not any(fnmatch.fnmatch(n, p) for p in patterns)}
        for per_layer in linears
    ]
