"""Task accuracy with lm-evaluation-harness, zero-shot, on the model in memory: the dense model
before pruning and the final one, with the same settings (tasks, limit, batch).

A task is a local directory (a task YAML and its JSON-lines data, so it runs offline: the
shipped ones in tasks_data/, the operator's under the tasks directory, or, in local runs, any
directory path) or the name of a task lm-evaluation-harness registers (its data fetched from
the hub).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from service.schemas import TASK_NAME, TaskResult
from worker.engine.errors import CalibrationError, SpecError

SHIPPED = Path(__file__).parent / "tasks_data"
BATCH = 8  # loglikelihood requests per forward
DATA_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class TaskRef:
    """A task as lm-eval takes it: a registered name, or a local task's config."""

    name: str
    config: dict | None = None  # None: a task lm-eval registers by this name
    source: str = "lm-evaluation-harness"


def resolve_tasks(names: list[str], tasks_dir: Path | None, allow_local: bool) -> list[TaskRef]:
    """Each task of `evaluation.tasks`, checked before any slow work: a local directory
    of that name (the tasks directory first, then the shipped ones), a directory path (local
    runs), or a name left to lm-eval's registry (checked when the tasks run)."""
    out = []
    for name in names:
        if not TASK_NAME.match(name):
            if not allow_local:
                raise SpecError(
                    f"evaluation.tasks: {name[:80]!r} is a path; a service job names its tasks"
                )
            out.append(local_task(Path(name).expanduser(), name))
            continue
        roots = [r for r in (tasks_dir, SHIPPED) if r is not None]
        found = next((r / name for r in roots if (r / name).is_dir()), None)
        out.append(local_task(found, name) if found else TaskRef(name))
    return out


def local_task(directory: Path, name: str) -> TaskRef:
    """The config of the one task YAML in `directory`, its data files resolved inside it."""
    import yaml

    where = f"evaluation.tasks: {name!r}"
    yamls = sorted(directory.glob("*.yaml")) if directory.is_dir() else []
    if len(yamls) != 1:
        found = "not a directory" if not directory.is_dir() else f"{len(yamls)} YAML files"
        raise CalibrationError(
            f"{where}: a local task is a directory with one task YAML and its "
            f"JSON-lines data; {directory}: {found}"
        )
    try:
        config = yaml.safe_load(yamls[0].read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:  # !function tags refused too
        raise CalibrationError(f"{where}: {yamls[0].name} is not plain YAML ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("task"), str):
        raise CalibrationError(f"{where}: {yamls[0].name} has no `task:` name")
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if config.get("dataset_path") != "json" or not isinstance(files, dict) or not files:
        raise CalibrationError(
            f"{where}: a local task reads its own data: dataset_path: json "
            "and dataset_kwargs.data_files {split: file in the directory}"
        )
    root = directory.resolve()
    resolved = {}
    for split, file in files.items():
        path = (root / str(file)).resolve()
        if root not in path.parents or not path.is_file() or path.suffix not in DATA_SUFFIXES:
            raise CalibrationError(
                f"{where}: data file {file!r} is not a .jsonl/.json file "
                "inside the task's directory"
            )
        resolved[split] = str(path)
    config["dataset_kwargs"] = {**config["dataset_kwargs"], "data_files": resolved}
    return TaskRef(config["task"], config, f"local task directory {directory.name}")


def evaluate(
    model, tokenizer, refs: list[TaskRef], limit: int | None, device: torch.device, check
) -> dict[str, tuple[int, dict[str, float]]]:
    """task -> (examples scored, metrics with their standard errors); `check()` runs before
    every forward (cancel)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    registered = [r.name for r in refs if r.config is None]
    manager = TaskManager(include_defaults=bool(registered))
    unknown = [n for n in registered if n not in manager.all_tasks]
    if unknown:
        raise SpecError(
            f"evaluation.tasks: {', '.join(unknown)}: no local task directory and "
            "no lm-evaluation-harness task of that name"
        )
    hook = model.register_forward_pre_hook(lambda m, a: check())
    was_training = model.training
    model.eval()
    try:  # the harness's progress bars (some cannot be switched off) never reach a log
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=BATCH, device=str(device))
            tasks = [r.config if r.config is not None else r.name for r in refs]
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=tasks,
                task_manager=manager,
                limit=limit,
                num_fewshot=0,
                log_samples=False,
                bootstrap_iters=1000,
                random_seed=0,
            )
    except (ConnectionError, OSError) as exc:
        raise CalibrationError(
            f"evaluation.tasks: a task's data could not be read or "
            f"fetched ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        hook.remove()
        model.train(was_training)
    return {name: _metrics(name, res, out) for name, res in out["results"].items()}


def _metrics(name: str, res: dict, out: dict) -> tuple[int, dict[str, float]]:
    samples = (out.get("n-samples") or {}).get(name, {}).get("effective", 0)
    metrics = {}
    for key, value in res.items():
        metric, _, filt = key.partition(",")
        if filt and isinstance(value, (int, float)) and value == value:  # not NaN ("N/A")
            metrics[metric] = round(float(value), 6)
    return int(samples), metrics


def eval_tasks(run, which: str) -> None:
    """The stage: `which` is "dense" (before pruning) or "pruned" (the final model)."""
    ev = run.spec.evaluation
    if which == "dense" and run.report.tasks:
        return  # measured before a restart
    refs = resolve_tasks(ev.tasks, run.where.tasks_dir, run.where.allow_local)
    model = run.model
    if run.device.type != "cpu":
        model.to(run.device)
    try:
        results = evaluate(
            model, run.tokenizer, refs, ev.task_limit, run.device, run.reporter.check_cancel
        )
    finally:
        if run.device.type != "cpu":
            model.to("cpu")
    sources = {r.name: r.source for r in refs}
    if which == "dense":
        run.report.tasks = [
            TaskResult(task=n, source=sources.get(n, "lm-evaluation-harness"), samples=k, dense=m)
            for n, (k, m) in results.items()
        ]
        return
    by_name = {t.task: t for t in run.report.tasks}
    for n, (k, m) in results.items():
        t = by_name.setdefault(n, TaskResult(task=n, source=sources.get(n, ""), samples=k))
        t.pruned = m
    run.report.tasks = list(by_name.values())
