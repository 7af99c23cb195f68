"""run(spec) -> PruneReport: a stage plan (load, calibrate, evaluate dense?, prune, evaluate
pruned?, save), each stage a small function. The only engine file that reads the contract.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from service.schemas import Perplexity, PruneReport, PruneSpec, partial_dir
from worker.engine import calibration, report
from worker.engine.errors import SpecError
from worker.engine.evaluate import perplexity
from worker.engine.mask_state import MaskState, check_fits
from worker.engine.masks import Pattern
from worker.engine.memory import peak_rss_mb, release
from worker.engine.methods import get_method
from worker.engine.model_io import (
    decoder_layers,
    get_weight,
    load_model,
    locate_model,
    prunable_linears,
    save_model,
)
from worker.engine.progress import Reporter
from worker.engine.pruner import Pruner
from worker.engine.streaming import LayerStreamer
from worker.engine.walker import walk


@dataclass
class Where:
    """Where a run reads and writes (the service pins these; local runs take defaults)."""

    output: Path
    data_dir: Path | None = None
    upload_dir: Path | None = None
    models_dir: Path | None = None  # the service's MODELS_DIR; None for local runs
    cache_dir: Path | None = None
    allow_local: bool = True  # a model name may be any local directory (never in the service)


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
    model: object = None
    tokenizer: object = None
    streamer: LayerStreamer | None = None
    targets: list[dict] = field(default_factory=list)
    ids: torch.Tensor | None = None
    eval_ids: torch.Tensor | None = None

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
    run.model, run.tokenizer = load_model(path, spec.dtype)
    layers_name, layers = decoder_layers(run.model)
    run.streamer = LayerStreamer(run.model, layers, run.device)
    every = [prunable_linears(layer, f"{layers_name}.{i}") for i, layer in enumerate(layers)]
    run.targets = skip(every, spec.skip)
    shapes = {n: tuple(get_weight(m).shape) for t in run.targets for n, m in t.items()}
    check_fits(shapes, pattern_of(spec))
    run.report.architecture = type(run.model).__name__
    run.report.dtype = str(next(run.model.parameters()).dtype).removeprefix("torch.")
    run.report.n_layers = len(layers)


def calibrate(run: Run) -> None:
    cal = run.spec.calibration
    run.ids = calibration.calibration_ids(
        run.tokenizer, cal.dataset, run.sources["calibration"], cal.nsamples, cal.seqlen, cal.seed
    )


def eval_dense(run: Run) -> None:
    ev = run.spec.evaluation
    run.eval_ids = calibration.eval_ids(run.tokenizer, run.sources["evaluation"])
    ppl, windows = perplexity(run.streamer, run.eval_ids, ev.seqlen, ev.max_windows, run.reporter)
    run.report.perplexity = Perplexity(
        dataset=ev.dataset, seqlen=ev.seqlen, windows=windows, dense=round(ppl, 4)
    )


def prune(run: Run) -> None:
    spec = run.spec
    method = get_method(spec.method)
    pruner = Pruner(method, pattern_of(spec), spec.method_options, run.masks, run.reporter)
    walk(run.streamer, run.ids, method.needs, run.targets, pruner, run.reporter)
    modules = {n: m for t in run.targets for n, m in t.items()}
    checks = run.masks.check(lambda name: get_weight(modules[name]))
    report.add_masks(run.report, checks, pruner.results)
    run.report.warnings.extend(pruner.warnings)


def eval_pruned(run: Run) -> None:
    ev = run.spec.evaluation
    ppl, _ = perplexity(run.streamer, run.eval_ids, ev.seqlen, ev.max_windows, run.reporter)
    run.report.perplexity.pruned = round(ppl, 4)


def save(run: Run) -> None:
    save_model(run.model, run.tokenizer, partial_dir(run.where.output))


def plan(spec: PruneSpec) -> list[Stage]:
    """The stages this spec needs, in order."""
    evaluate = spec.evaluation is not None
    stages = [Stage("load", load, 5)]
    if get_method(spec.method).needs is not None:
        stages.append(Stage("calibrate", calibrate, 5))
    if evaluate:
        stages.append(Stage("eval_dense", eval_dense, 15))
    stages.append(Stage("prune", prune, 60, steps=lambda r: r.n_layers))
    if evaluate:
        stages.append(Stage("eval_pruned", eval_pruned, 10))
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
) -> PruneReport:
    """Prune `spec.model` and write the checkpoint plus pruning_report.json to `output`.

    `spec.model` is a model under `models_dir` (the service), a local directory (local runs,
    if `allow_local`) or a hub id.
    """
    where = Where(Path(output), data_dir, upload_dir, models_dir, cache_dir, allow_local)
    if where.output.exists():
        raise SpecError(f"output {output} already exists; choose a new directory or remove it")
    get_method(spec.method)
    device = pick_device(spec.device)
    reporter = reporter or Reporter()
    state = Run(spec, where, reporter, device, report.new_report(spec, str(device)))
    state.sources = datasets(spec, where)  # missing files are reported before the slow load
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages = plan(spec)
    for stage, span in zip(stages, spans(stages), strict=True):
        release()
        reporter.stage(stage.name, stage.steps(state), span)
        t0 = time.perf_counter()
        stage.fn(state)
        state.report.stages_s[stage.name] = round(time.perf_counter() - t0, 3)
    finish(state)
    return state.report


def datasets(spec: PruneSpec, where: Where) -> dict[str, Path | str]:
    out = {}
    if get_method(spec.method).needs is not None:
        out["calibration"] = calibration.resolve_dataset(
            spec.calibration.dataset, "calibration", where.data_dir, where.upload_dir
        )
    if spec.evaluation is not None:
        out["evaluation"] = calibration.resolve_dataset(
            spec.evaluation.dataset, "evaluation", where.data_dir, where.upload_dir
        )
    return out


def finish(run: Run) -> None:
    """Write the report once into the saved checkpoint, then publish it under `output`."""
    run.report.peak_rss_mb = round(peak_rss_mb(), 1)
    if run.device.type == "cuda":
        run.report.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    partial = partial_dir(run.where.output)
    report.write(run.report, partial)
    partial.rename(run.where.output)


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
