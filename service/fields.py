"""What a contract field says about itself beyond its type: the values a string field takes.

Read by the validators, the OpenAPI schema and the CLI's generated flags alike. Pure pydantic.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic.fields import FieldInfo


def one_of(values: tuple[str, ...]) -> dict[str, Any]:
    """`json_schema_extra` of a string field that takes one of `values`: the OpenAPI enum, the
    CLI's choices and the validator's list."""
    return {"enum": list(values)}


def choices(field: FieldInfo) -> tuple[str, ...]:
    """The values a field takes (a Literal, or a `one_of` string); () when any."""
    if typing.get_origin(field.annotation) is Literal:
        return typing.get_args(field.annotation)
    extra = field.json_schema_extra
    values = extra.get("enum") if isinstance(extra, dict) else None
    return tuple(str(v) for v in values) if isinstance(values, list) else ()
