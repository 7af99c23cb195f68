"""What `pruneserve prune` can tell is wrong in well under a second, before torch and the model
load: the output directory, a local model directory, the data files the flags name.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from service.schemas import CalibrationSpec, TrainingSpec
from worker.engine.data.datasets import NAMED, resolve_dataset
from worker.engine.errors import CalibrationError, ModelLoadError, SpecError

_HUB_OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def check_inputs(spec, output: Path, data_dir: Path, data_dir_given: bool) -> None:
    """Raise the engine's own typed error for an input already known to be wrong."""
    if output.exists():
        raise SpecError(f"output {output} already exists; choose a new directory or remove it")
    check_model(spec.model)
    if data_dir_given and not data_dir.is_dir():
        raise CalibrationError(f"data directory {data_dir} not found")
    reads = []  # (flag, its default, dataset, split): training reads the calibration split
    if spec.calibrates or spec.calibration.dataset not in NAMED:
        reads.append(
            ("--calibration", _default(CalibrationSpec), spec.calibration.dataset, "calibration")
        )
    for ts in (spec.training, spec.recovery):
        if ts is not None:
            reads.append(("--train-data", _default(TrainingSpec), ts.dataset, "calibration"))
    if spec.evaluation is not None:
        reads.append(("--eval", None, spec.evaluation.dataset, "evaluation"))
    for flag, default, name, split in reads:
        try:
            check_dataset(name, split, data_dir)
        except CalibrationError as exc:  # name the flag: a default is a value nobody typed
            given = f" (default {name!r})" if name == default else ""
            raise CalibrationError(f"{flag}{given}: {exc}") from None


def _default(spec_model) -> str:
    return spec_model.model_fields["dataset"].default


def check_model(model: str) -> None:
    """A local model directory must exist and hold a config.json; a name shaped `org/name`
    that is not a local directory is a hub id, left to the engine to download."""
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(f"{model} has no config.json: not a Hugging Face model directory")
        return
    if _looks_like_hub_id(model):
        return
    what = "is not a directory" if local.exists() else "not found"
    raise ModelLoadError(
        f"model directory {model} {what} (and {model!r} is not a hub id of the form org/name)"
    )


def _looks_like_hub_id(model: str) -> bool:
    org, sep, name = model.partition("/")
    return bool(sep and org and name) and "/" not in name and not model.startswith((".", "~"))


def check_dataset(name: str, split: str, data_dir: Path) -> None:
    """A dataset the run will read: a named corpus must be in the data directory unless the
    hub fallback can work (the `datasets` package installed, the hub not switched off)."""
    if name not in NAMED:
        resolve_dataset(name, split, data_dir)
        return
    path = data_dir / NAMED[name][split]
    hub_possible = importlib.util.find_spec("datasets") is not None and not any(
        os.environ.get(v, "") not in ("", "0") for v in _HUB_OFFLINE
    )
    if not path.is_file() and not hub_possible:
        raise CalibrationError(
            f"dataset {name!r}: {path} not found (set --data-dir or PRUNESERVE_DATA_DIR to a "
            f"folder laid out like <dir>/{NAMED['wikitext2'][split]}), and no Hugging Face "
            "`datasets` to fetch it with"
        )
