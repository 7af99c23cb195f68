"""The prune stage: the one-shot walk (with OWL's profile, DSnoT's refinement and
reconstruction when asked), checkpointed so a restarted job resumes at the last layer.
"""

from __future__ import annotations

from worker.engine.memory import release
from worker.engine.methods import get_method
from worker.engine.model.model_io import (
    get_weight,
)
from worker.engine.prune.owl import OWLAllocator, outlier_ratio
from worker.engine.prune.pruner import DSnoTRefiner, Pruner
from worker.engine.prune.reconstruct import Reconstructor
from worker.engine.stages.state import Run, given, pattern_of, stats_needed
from worker.engine.walk import walk_resume
from worker.engine.walk.walker import survey, walk


def prune(run: Run) -> None:
    spec = run.spec
    method = get_method(spec.method)
    profile = refine = None
    if spec.sparsity_profile == "owl":
        owl = run.resume.meta["owl"] if run.resume is not None else None
        profile = owl_profile(run, owl["ratios"] if owl else None)
    if spec.refine == "dsnot":
        d = given(spec.dsnot, "dsnot")
        refine = DSnoTRefiner(d.max_cycles, d.update_threshold, d.var_power)
    pruner = Pruner(
        method,
        pattern_of(spec),
        spec.method_options,
        run.masks,
        run.warn,
        profile=profile,
        refine=refine,
    )
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

    walk(
        run.streamer,
        run.ids,
        stats_needed(spec),
        run.targets,
        pruner,
        run.reporter,
        warn=run.warn,
        begin_layer=pruner.begin_layer,
        start=start,
        start_inps=start_inps,
        after_layer=after_layer,
        recon=recon,
    )
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
    owl = given(spec.owl, "owl")
    sizes = [sum(get_weight(m).numel() for m in t.values()) for t in run.targets]
    if saved is not None:
        return OWLAllocator(spec.parsed_sparsity.ratio, owl.lam, sizes, saved)
    ratios = [0.0] * len(run.targets)

    def visit(i: int, groups) -> None:
        pairs = [(w, st) for _, ws, st in groups for w in ws]
        ratios[i] = outlier_ratio([w for w, _ in pairs], [st for _, st in pairs], owl.m)

    ids = given(run.ids, "the calibration windows")
    survey(run.streamer, ids[: owl.samples], run.targets, visit, run.reporter)
    return OWLAllocator(spec.parsed_sparsity.ratio, owl.lam, sizes, ratios)
