"""The load stage: the model (eagerly, or a layer at a time), what to prune in it, the checks
that need no data, and the layers a restarted walk finished.
"""

from __future__ import annotations

import copy
import fnmatch
import shutil
from pathlib import Path

import torch

from service.schemas import (
    Perplexity,
    PruneSpec,
    Samples,
    TaskResult,
    partial_dir,
    resume_dir,
)
from worker.engine.errors import SpecError, UnsupportedModelError
from worker.engine.model.model_io import (
    DTYPES,
    check_model_dir,
    decoder_layers,
    get_weight,
    load_model,
    load_tokenizer,
    locate_model,
    matrix_counts,
    prunable_linears,
)
from worker.engine.prune.mask_state import check_fits
from worker.engine.stages.state import Run, given, matrix_shape, pattern_of, run_key
from worker.engine.stages.training import check_training_fits, needs_dense_copy
from worker.engine.train import memory as train_memory
from worker.engine.train.teacher import load_teacher
from worker.engine.walk.experts import expert_targets, router_linears
from worker.engine.walk.lazy import LazyUnsupported, checkpoint_bytes, open_lazy
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walk_resume import WalkCheckpoints

LAZY_SHARE = 0.5  # auto loads lazily when the weights exceed this share of available memory


def load(run: Run) -> None:
    """Load the model; choose what to prune and check the pattern fits it, before any work."""
    spec = run.spec
    path = locate_model(
        spec.model,
        spec.revision,
        models_dir=run.where.models_dir,
        cache_dir=run.where.cache_dir,
        allow_local=run.where.allow_local,
    )
    run.source = path
    run.walk_checkpoints = WalkCheckpoints(
        resume_dir(run.where.output), run_key(spec), spec.checkpoint_layers
    )
    if spec.method_options.walks():
        run.resume = run.walk_checkpoints.load()
    weights = open_model(run, path)
    layers_name, layers = decoder_layers(run.model)
    run.streamer = LayerStreamer(run.model, layers, run.device, weights)
    if run.resume is not None:
        resume_layers(run)
    every = [layer_targets(layer, f"{layers_name}.{i}") for i, layer in enumerate(layers)]
    run.targets = skip(every, spec.skip)
    shapes = {n: matrix_shape(get_weight(m)) for t in run.targets for n, m in t.items()}
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
    state, weights = given(run.resume, "the walk's saved state"), run.streamer.weights
    if weights is not None:
        weights.load_state_dict(state.meta["lazy"])
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
    return {
        **{n: m for n, m in linears.items() if n not in routers},
        **expert_targets(layer, prefix),
    }


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
