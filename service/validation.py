"""Checks on a job spec that need the server's settings: model names, datasets, limits."""

from __future__ import annotations

from service.datasets import DatasetStore
from service.errors import ApiError
from service.model_names import local_models, resolve_model
from service.schemas import NAMED_DATASETS, TASK_NAME, TASKS_ALLOWED, PruneSpec
from service.settings import Settings


def check_spec(spec: PruneSpec, tenant: str, settings: Settings, datasets: DatasetStore) -> None:
    """Raise ApiError(422) naming the field and what is allowed."""
    try:
        resolve_model(spec.model, settings.MODELS_DIR)
    except ValueError as exc:
        names = local_models(settings.MODELS_DIR)
        hint = f" (local models: {', '.join(names)})" if names else ""
        raise ApiError(422, f"model: {exc}{hint}", "model") from None
    if spec.teacher is not None:  # a name, as the model: never a server path
        try:
            resolve_model(spec.teacher.model, settings.MODELS_DIR)
        except ValueError as exc:
            raise ApiError(422, f"teacher.model: {exc}", "teacher.model") from None
    cal = spec.calibration
    tokens, limit = cal.nsamples * cal.seqlen, settings.MAX_CALIBRATION_TOKENS
    if tokens > limit:
        raise ApiError(
            422,
            f"calibration.nsamples: nsamples x seqlen = {cal.nsamples} x {cal.seqlen} = {tokens} "
            f"tokens is over the limit of {limit}; lower nsamples or seqlen",
            "calibration.nsamples",
        )
    _check_dataset(cal.dataset, "calibration.dataset", tenant, datasets)
    for field, ts in (("training", spec.training), ("recovery", spec.recovery)):
        if ts is not None:  # never a server path: a named corpus or the tenant's upload
            _check_train_tokens(field, ts, settings.MAX_TRAIN_TOKENS)
            _check_dataset(ts.dataset, f"{field}.dataset", tenant, datasets)
    if spec.evaluation is not None:
        _check_dataset(spec.evaluation.dataset, "evaluation.dataset", tenant, datasets)
        for task in spec.evaluation.tasks:  # never a server path: a name the worker resolves
            if not TASK_NAME.match(task):
                raise ApiError(
                    422,
                    f"evaluation.tasks: {task[:80]!r} is a path; a service job names its tasks: "
                    f"{TASKS_ALLOWED.split('; local runs')[0]}",
                    "evaluation.tasks",
                )


def _check_train_tokens(field: str, ts, limit: int) -> None:
    tokens = ts.steps * ts.batch_size * ts.seqlen
    if tokens > limit:
        raise ApiError(
            422,
            f"{field}.steps: steps x batch_size x seqlen = {ts.steps} x {ts.batch_size} x "
            f"{ts.seqlen} = {tokens} training tokens is over the limit of {limit} "
            "(PRUNESERVE_MAX_TRAIN_TOKENS); lower steps, batch_size or seqlen",
            f"{field}.steps",
        )


def _check_dataset(name: str, field: str, tenant: str, datasets: DatasetStore) -> None:
    if name in NAMED_DATASETS:
        return
    if name.startswith("upload:") and datasets.owned_by(tenant, name.removeprefix("upload:")):
        return
    allowed = ", ".join(NAMED_DATASETS)
    raise ApiError(
        422,
        f"{field}: unknown dataset {name!r}; allowed: {allowed}, or upload:<id> of your upload",
        field,
    )
