"""POST /v1/jobs with "dry_run": the plan of a job from its model's config.json; no job."""

from __future__ import annotations

from service.errors import ApiError
from service.model_names import resolve_model
from service.planner.devices import parse_devices
from service.planner.plan import Plan, plan
from service.planner.shape import ConfigError, read_config
from service.schemas import JobCreate
from service.settings import Settings


def dry_run(body: JobCreate, settings: Settings) -> Plan:
    """The plan for the body's spec on `plan_for` (or the workers' devices); ApiError(422)
    when the model has no config.json the API can read (hub ids are never fetched)."""
    path = resolve_model(body.model, settings.MODELS_DIR)  # check_spec accepted the name
    if path is None:
        raise ApiError(
            422,
            f"model: a dry run plans from config.json, and {body.model!r} is a hub id with no "
            "local copy under MODELS_DIR; plan it locally with `pruneserve prune --dry-run "
            "--model <dir holding its config.json>`",
            "model",
        )
    try:
        shape = read_config(path)
    except ConfigError as exc:
        raise ApiError(422, f"model: {exc}", "model") from None
    try:
        devices = parse_devices(body.plan_for or settings.PLAN_DEVICES)
    except ValueError as exc:
        raise ApiError(422, f"plan_for: {exc}", "plan_for") from None
    return plan(body.spec(), shape, devices)
