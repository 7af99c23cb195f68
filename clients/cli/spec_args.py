"""The spec flags shared by `pruneserve prune` (local) and `pruneserve submit` (remote).

Generated from the contract: every field of PruneSpec and of the objects it holds is a flag,
its help the field's description, its default the field's, its choices the field's Literal or
`one_of` values, so a field added to the contract is a flag with no code here. A nested object's
flags are named `--<prefix><field>` (PREFIXES); FLAG_NAMES keeps the names that differ. Each
method's option flags come from its options model (service/methods.py).
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from service.fields import choices
from service.methods import METHODS
from service.schemas import SCHEDULE_FIELDS, PruneSpec

DEST = "spec:"  # argparse dest of a generated flag: "spec:<object>.<field>" or "spec:<field>"
OPTION_DEST = "option__"  # argparse dest prefix of the generated method-option flags
PREFIXES = {"evaluation": "eval-", "reconstruction": "reconstruct-", "training": "train-"}
# flag names that are not `<prefix><field>`, by field path
FLAG_NAMES = {
    "calibration.dataset": "calibration",
    "calibration.nsamples": "nsamples",
    "calibration.seqlen": "seqlen",
    "calibration.seed": "seed",
    "evaluation.dataset": "eval",
    "evaluation.max_windows": "eval-windows",
    "evaluation.prompts": "eval-prompt",
    "owl.lam": "owl-lambda",
    "dsnot.max_cycles": "dsnot-cycles",
    "dsnot.update_threshold": "dsnot-threshold",
    "reconstruction.batch_size": "reconstruct-batch",
    "training.dataset": "train-data",
    "training.batch_size": "train-batch",
    "training.micro_batch": "micro-batch",
    "training.lr": "lr",
    "training.distill": "distill",
    "training.lm_weight": "lm-weight",
    "training.kl_weight": "kl-weight",
    "training.objective": "objective",
    "training.lr_rewind": "lr-rewind",
    "training.precision": "precision",
    "training.gradient_checkpointing": "gradient-checkpointing",
    "training.initial_sparsity": "initial-sparsity",
    "training.warmup_steps": "warmup-steps",
    "training.prune_every": "prune-every",
    "training.cooldown_steps": "cooldown-steps",
    "recovery.steps": "recover-steps",
    "teacher.model": "teacher",
}
# an object that shares another's flags (the same model), but for its own switch
SHARES = {"recovery": "training"}
# the fields whose flag turns an object on; an object not named here is on when any flag of it
# is given. A flag of an object that is off is an error, but for shared flags (they may serve
# the other object) and for an object the method creates itself.
SWITCHES = {
    "evaluation": ("dataset", "tasks"),
    "reconstruction": ("epochs",),
    "training": ("steps",),
    "recovery": ("steps",),
    "teacher": ("model",),
}
COMMA_LISTS = ("evaluation.tasks",)  # a list given as one comma-separated flag
DEFAULT_FROM = {"evaluation.seqlen": "calibration.seqlen"}  # unset: the other flag's value
GROUPS = {  # --help groups of the nested objects (the others: their field's name)
    "owl": "layer-wise sparsity (OWL)",
    "dsnot": "mask refinement (DSnoT)",
    "reconstruction": "block-wise reconstruction (EBFT)",
    "training": "training (smp's own training, and recovery)",
}


@dataclass(frozen=True)
class Flag:
    """One generated flag: the field it sets and how argparse reads it."""

    path: str  # "calibration.nsamples", or a top-level field such as "sparsity"
    name: str  # without the leading --
    info: FieldInfo

    @property
    def dest(self) -> str:
        return DEST + self.path


def _object_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a nested object field (`TrainingSpec | None` -> TrainingSpec)."""
    for t in (info.annotation, *typing.get_args(info.annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _scalar(annotation: Any) -> Any:
    """`int | None` -> int; a union of several types (float | str) -> str."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def flags() -> list[Flag]:
    """Every spec field's flag, top-level fields first, then each object's."""
    top, nested = [], []
    for name, info in PruneSpec.model_fields.items():
        model = _object_model(info)
        if model is None:
            if name != "options":  # the method's options: add_option_args
                top.append(Flag(name, name.replace("_", "-"), info))
            continue
        shared = SHARES.get(name)
        prefix = PREFIXES.get(shared or name, f"{shared or name}-")
        for field, finfo in model.model_fields.items():
            path = f"{name}.{field}"
            if shared and path not in FLAG_NAMES:
                continue  # the flag of `shared`
            flag = FLAG_NAMES.get(path, prefix + field.replace("_", "-"))
            nested.append(Flag(path, flag, finfo))
    return top + nested


def _kind(flag: Flag) -> dict[str, Any]:
    """argparse's type, action or choices for the field's type."""
    allowed = choices(flag.info)
    if allowed:
        return {"choices": list(allowed)}
    t = _scalar(flag.info.annotation)
    if t is bool:
        return {"action": argparse.BooleanOptionalAction}
    kind: dict[str, Any] = {"metavar": flag.name.upper().replace("-", "_")}
    if typing.get_origin(t) is list:
        return kind if flag.path in COMMA_LISTS else {**kind, "action": "append"}
    return {**kind, "type": t if t in (int, float) else str}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _help(flag: Flag, names: dict[str, str]) -> str:
    """The field's description with its default (unless the description says it)."""
    about = flag.info.description or flag.path.rsplit(".", 1)[-1].replace("_", " ")
    if flag.path == "method":
        about += f"; one of: {', '.join(METHODS)}"
    obj, _, field = flag.path.rpartition(".")
    if obj in SWITCHES and field in SWITCHES[obj]:
        on = PruneSpec.model_fields[obj].description or obj
        about += f"; giving it turns on `{obj}`: {on} (default: off)"
    elif flag.path in DEFAULT_FROM:
        about += f" (default: --{names[DEFAULT_FROM[flag.path]]})"
    elif "default" not in about and not flag.info.is_required():
        default = flag.info.get_default(call_default_factory=True)
        if default is not None:
            about += f" (default: {_shown(default)})"
    return about.replace("%", "%%")


def add_spec_args(p: argparse.ArgumentParser) -> None:
    every = flags()
    names = {f.path: f.name for f in every}
    groups: dict[str, Any] = {"": p}
    for flag in every:
        obj = flag.path.rpartition(".")[0]
        obj = SHARES.get(obj, obj)
        if obj not in groups:
            groups[obj] = p.add_argument_group(GROUPS.get(obj, obj))
        groups[obj].add_argument(
            "--" + flag.name,
            dest=flag.dest,
            default=None,
            required="." not in flag.path and flag.info.is_required(),
            help=_help(flag, names),
            **_kind(flag),
        )
    add_option_args(p.add_argument_group("method options (only the chosen method's apply)"))


def add_option_args(group) -> None:
    """One flag per option field of the registered methods (shared names share a flag)."""
    seen: dict[str, list[str]] = {}
    fields = {}
    for method, model in METHODS.items():
        for name, info in model.model_fields.items():
            seen.setdefault(name, []).append(f"{method}, default {info.default}")
            fields.setdefault(name, info)
    for name, info in fields.items():
        kind: dict[str, Any] = {}
        args = typing.get_args(info.annotation)
        if typing.get_origin(info.annotation) is typing.Literal:
            kind["choices"] = list(args)
        elif info.annotation is bool:
            kind["action"] = argparse.BooleanOptionalAction
        elif info.annotation in (int, float):
            kind["type"] = info.annotation
        about = info.description or name.replace("_", " ")
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=OPTION_DEST + name,
            metavar=name.upper() if "choices" not in kind and "action" not in kind else None,
            default=None,
            help=f"{about} ({'; '.join(seen[name])})",
            **kind,
        )


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """The spec flags that were given, by field path."""
    out = {}
    for dest, value in vars(args).items():
        if dest.startswith(DEST) and value is not None:
            out[dest.removeprefix(DEST)] = value
    for path in COMMA_LISTS:
        if path in out:
            out[path] = [t.strip() for t in out[path].split(",") if t.strip()]
    return out


def _object(name: str, given: dict[str, Any], data: dict[str, Any], names: dict[str, str]):
    """The nested object `name` of the given flags, or None when it is off."""
    model = _object_model(PruneSpec.model_fields[name])
    assert model is not None
    source = SHARES.get(name, name)
    own = {f for f in model.model_fields if f"{name}.{f}" in names}
    values = {}
    for field in model.model_fields:
        path = f"{name if field in own else source}.{field}"
        if path in given and not (source != name and field in SCHEDULE_FIELDS):
            values[field] = given[path]
    for path, src in DEFAULT_FROM.items():
        field = path.removeprefix(name + ".")
        if field != path and field not in values and src in given:
            values[field] = given[src]
    switches = SWITCHES.get(name)
    if switches is None:
        return values or None
    if any(given.get(f"{name}.{s}") for s in switches):
        return values
    method = METHODS.get(data.get("method", ""))
    if name == "training" and method is not None and method.TRAINS:
        return values  # the method trains: its `training`, with the flags given
    stray = [
        f
        for f in values
        if f"{name}.{f}" in given and f not in switches and name not in SHARES.values()
    ]
    if stray:
        on = " or ".join(f"--{names[f'{name}.{s}']}" for s in switches)
        raise SystemExit(f"error: --{names[f'{name}.{stray[0]}']} needs {on}")
    return None


def spec_from_args(args: argparse.Namespace) -> PruneSpec:
    """Build the spec in one validation, so every bad flag is named with its full field path
    (e.g. calibration.nsamples)."""
    given = _given(args)
    names = {f.path: f.name for f in flags()}
    data: dict[str, Any] = {k: v for k, v in given.items() if "." not in k}
    data["options"] = {
        key.removeprefix(OPTION_DEST): value
        for key, value in vars(args).items()
        if key.startswith(OPTION_DEST) and value is not None
    }
    for name, info in PruneSpec.model_fields.items():
        if name != "options" and _object_model(info) is not None:
            value = _object(name, given, data, names)
            if value is not None:
                data[name] = value
    return PruneSpec.model_validate(data)  # a ValidationError names every bad field
