"""run(spec) -> PruneReport: load, calibrate, (evaluate dense), walk, (evaluate pruned), save."""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from service.schemas import REPORT_FILE as REPORT_NAME
from service.schemas import Perplexity, PruneReport, PruneSpec
from worker.engine import calibration
from worker.engine.errors import ModelLoadError, SpecError
from worker.engine.evaluate import perplexity
from worker.engine.memory import peak_rss_mb, release
from worker.engine.methods import get_method
from worker.engine.model_io import (
    decoder_coverage,
    decoder_layers,
    load_model,
    resolve_model,
    save_atomic,
)
from worker.engine.progress import Reporter
from worker.engine.walker import walk


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("device 'cuda' was asked for but CUDA is not available; use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def versions() -> dict[str, str]:
    import accelerate
    import safetensors
    import transformers

    return {
        "pruneserve": "0.1.0",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "safetensors": safetensors.__version__,
    }


UNPRUNED_WARN = 0.10  # a pattern leaving more of the decoder weights dense is a warning

# relative cost of each stage, for overall percent: the plan's stages share 0-100 by weight
STAGE_WEIGHTS = {"load": 5, "calibrate": 5, "eval_dense": 15, "prune": 60, "eval_pruned": 10,
                 "save": 5}  # fmt: skip


def stage_spans(names: list[str]) -> dict[str, tuple[float, float]]:
    """(start, end) percent of each planned stage, in plan order."""
    total = sum(STAGE_WEIGHTS.get(n, 10) for n in names)
    spans, at = {}, 0.0
    for n in names:
        end = at + 100.0 * STAGE_WEIGHTS.get(n, 10) / total
        spans[n] = (round(at, 1), round(end, 1))
        at = end
    return spans


class _Clock:
    def __init__(self, reporter: Reporter, plan: list[str]):
        self.reporter = reporter
        self.spans = stage_spans(plan)
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int = 0):
        release()
        self.reporter.stage(name, total, self.spans.get(name, (0.0, 100.0)))
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - t0, 3)


def run(
    spec: PruneSpec,
    output: Path,
    *,
    reporter: Reporter | None = None,
    data_dir: Path | None = None,
    upload_dir: Path | None = None,
    model_path: Path | None = None,
    cache_dir: Path | None = None,
    allow_local: bool = True,
) -> PruneReport:
    """Prune `spec.model` and write the checkpoint plus pruning_report.json to `output`.

    `model_path` overrides where the model is loaded from; without it `spec.model` is a local
    directory (if `allow_local`) or a hub id.
    """
    reporter = reporter or Reporter()
    output = Path(output)
    if output.exists():
        raise SpecError(f"output {output} already exists; choose a new directory or remove it")
    method = get_method(spec.method)
    device = pick_device(spec.device)
    plan = ["load"] + (["calibrate"] if method.needs is not None else [])
    if spec.evaluation is not None:
        plan.append("eval_dense")
    plan.append("prune")
    plan += (["eval_pruned"] if spec.evaluation is not None else []) + ["save"]
    clock = _Clock(reporter, plan)
    report = PruneReport(spec=spec, versions=versions(), device=str(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    with clock.stage("load"):
        path = model_path or resolve_model(spec.model, spec.revision, cache_dir, allow_local)
        if not Path(path).is_dir():
            raise ModelLoadError(f"model directory {path} not found")
        model, tokenizer = load_model(Path(path), spec.dtype)
        layers_name, layers = decoder_layers(model)
        report.architecture = type(model).__name__
        report.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        report.n_layers = len(layers)

    ids = None
    if method.needs is not None:
        with clock.stage("calibrate"):
            cal = spec.calibration
            source = calibration.resolve_dataset(cal.dataset, "calibration", data_dir, upload_dir)
            ids = calibration.calibration_ids(
                tokenizer, cal.dataset, source, cal.nsamples, cal.seqlen, cal.seed
            )

    eval_ids = None
    if spec.evaluation is not None:
        ev = spec.evaluation
        source = calibration.resolve_dataset(ev.dataset, "evaluation", data_dir, upload_dir)
        eval_ids = calibration.eval_ids(tokenizer, source)
        with clock.stage("eval_dense"):
            dense, windows = perplexity(
                model, layers, eval_ids, ev.seqlen, ev.max_windows, device, reporter
            )
        report.perplexity = Perplexity(
            dataset=ev.dataset, seqlen=ev.seqlen, windows=windows, dense=round(dense, 4)
        )

    with clock.stage("prune", total=len(layers)):
        modules = walk(
            model, layers_name, layers, ids, method, spec, device, reporter, report.warnings
        )
    report.modules = modules
    total = sum(m.shape[0] * m.shape[1] for m in modules)
    report.sparsity = sum(m.sparsity * m.shape[0] * m.shape[1] for m in modules) / max(total, 1)
    report.decoder_sparsity, unpruned = decoder_coverage(layers, total)
    if unpruned > UNPRUNED_WARN:
        report.warnings.append(
            f"{unpruned:.0%} of the decoder weights are not pruned (skipped, routers or "
            f"unsupported modules); sparsity over all decoder weights is "
            f"{report.decoder_sparsity:.3f}"
        )
    if spec.parsed_sparsity.is_nm:
        report.nm_ok = all(m.nm_ok for m in modules)
    for m in modules:
        if m.damping is not None and m.damping > spec.options.percdamp:
            report.warnings.append(f"{m.name}: SparseGPT damping raised to {m.damping:g}")
    for w in report.warnings:
        reporter.warn(w)

    if eval_ids is not None:
        ev = spec.evaluation
        with clock.stage("eval_pruned"):
            pruned, _ = perplexity(
                model, layers, eval_ids, ev.seqlen, ev.max_windows, device, reporter
            )
        report.perplexity.pruned = round(pruned, 4)

    with clock.stage("save"):
        report.stages_s = clock.stages
        report.peak_rss_mb = round(peak_rss_mb(), 1)
        if device.type == "cuda":
            report.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        save_atomic(model, tokenizer, output, {REPORT_NAME: report.model_dump_json(indent=2)})
    report.stages_s = clock.stages  # now with the save time
    tmp = output / (REPORT_NAME + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(output / REPORT_NAME)
    return report
