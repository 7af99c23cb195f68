"""The API's side of the methods: options validated per method, the `options` JSON schema and
the methods OWL, DSnoT and reconstruction work with.

The methods themselves, their options models and every fact about them, are declared in their
own folders (worker/engine/methods/<name>/) and registered there; this module reads them from
that registry (`METHODS`), which imports no torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from worker.engine.methods import METHODS, Options

__all__ = ["METHODS", "Options", "one_shot_methods", "options_schema", "validate_options"]


def one_shot_methods() -> list[str]:
    """The methods OWL, DSnoT and reconstruction work with."""
    return [name for name, model in METHODS.items() if model.ONE_SHOT]


def _legacy_defaults() -> dict[str, Any]:
    """Options of every method at their defaults: the old flat `options` object sent all of
    them whatever the method, so a key of another method left at its default is ignored."""
    out: dict[str, Any] = {}
    for model in METHODS.values():
        for key, field in model.model_fields.items():
            out.setdefault(key, field.default)
    return out


def validate_options(method: str, raw: dict[str, Any]) -> Options:
    """The options of `method` from `raw`; ValueError naming an option the method lacks."""
    model = METHODS[method]
    legacy = _legacy_defaults()
    own: dict[str, Any] = {}
    for key, value in raw.items():
        if key in model.model_fields:
            own[key] = value
        elif key in legacy and value == legacy[key]:
            continue  # the old flat bag: another method's option at its default
        else:
            mine = ", ".join(model.model_fields) or "none"
            raise ValueError(f"method {method!r} has no option {key!r}; its options: {mine}")
    try:
        return model.model_validate(own)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


def options_schema(schema: dict[str, Any]) -> None:
    """JSON schema of `options`: any registered method's options (called when the schema is
    generated, so methods registered later appear too)."""
    schema.pop("additionalProperties", None)
    schema["anyOf"] = [
        {**m.model_json_schema(), "title": f"{name} options"} for name, m in METHODS.items()
    ]
    schema["description"] = "options of the chosen method; see each method's options"
