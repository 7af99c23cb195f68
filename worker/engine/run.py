"""run(spec) -> PruneReport: the plan of stages a spec needs (load, calibrate, evaluate dense?,
prune, train?, recover?, evaluate pruned?, save), run in order. Each stage is its own module in
worker/engine/stages, a function of the run's state (stages/state.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from service.schemas import PruneReport, PruneSpec
from worker.engine.data import calibration
from worker.engine.errors import CalibrationError, SpecError
from worker.engine.evaluation.tasks_eval import eval_tasks, resolve_tasks
from worker.engine.memory import release
from worker.engine.methods import get_method
from worker.engine.model.model_io import locate_model
from worker.engine.progress import Reporter
from worker.engine.publish import report
from worker.engine.stages.calibrate import calibrate
from worker.engine.stages.evaluation import eval_dense, eval_pruned
from worker.engine.stages.load import layer_targets, load
from worker.engine.stages.prune import prune
from worker.engine.stages.save import finish, save
from worker.engine.stages.state import Run, Stage, Where, pick_device, stats_needed
from worker.engine.stages.training import learn, recover

__all__ = ["Run", "Stage", "Where", "datasets", "layer_targets", "plan", "run", "spans"]


def _fixed(n: int) -> Callable[[Run], int]:
    """A stage's units of progress known before it runs (its training steps)."""
    return lambda run: n


def plan(spec: PruneSpec) -> list[Stage]:
    """The stages this spec needs, in order."""
    evaluate = spec.evaluation is not None
    stages = [Stage("load", load, 5)]
    if stats_needed(spec) is not None:
        stages.append(Stage("calibrate", calibrate, 5))
    tasks = spec.evaluation is not None and bool(spec.evaluation.tasks)
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
        stages.append(Stage(name, fn, 0.6 * ts.steps, steps=_fixed(ts.steps)))
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
    locate_model(
        spec.model, spec.revision, models_dir=models_dir, allow_local=allow_local, fetch=False
    )
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


def datasets(spec: PruneSpec, where: Where) -> dict[str, Path | list[str]]:
    named = [(f, getattr(spec, f)) for f in ("training", "recovery", "calibration", "evaluation")]
    for part_name, part in named:
        name = part.dataset if part is not None else None
        local = name and name not in calibration.NAMED and not name.startswith("upload:")
        if local and not where.allow_local:  # the service's boundary checks this too
            raise SpecError(
                f"{part_name}.dataset: {name!r} is a file path; a service job reads "
                "only wikitext2, c4 or upload:<id>"
            )
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
