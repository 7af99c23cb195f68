"""The save stage and the end of a run: final mask checks, the checkpoint, then the report,
card and plots, published under the output directory at once.
"""

from __future__ import annotations

import shutil

import torch

from service.schemas import (
    partial_dir,
    resume_dir,
)
from worker.engine.memory import peak_rss_mb
from worker.engine.model.file_mode import set_file_modes
from worker.engine.model.model_io import (
    decoder_coverage,
    get_weight,
    matrix_counts,
    save_model,
)
from worker.engine.publish import outputs, report
from worker.engine.stages.state import Run

UNPRUNED_WARN = 0.10  # a pattern leaving more of the decoder weights dense is a warning


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
