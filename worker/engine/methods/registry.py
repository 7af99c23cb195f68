"""The registry behind `worker.engine.methods`: each method's name and its folder.

`register(name)` reads the folder's options model at once (`<folder>/options.py`, torch-free,
so the API lists and validates methods without the engine) and its engine side, the `METHOD`
of its `task` module if it has one (a method that learns) else of its `prune` module, only
when the engine first asks for it (`REGISTRY`, `get_method`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from worker.engine.methods.options import Options

if TYPE_CHECKING:
    from worker.engine.methods.base import Method

METHODS: dict[str, type[Options]] = {}  # name -> its options model, in registration order
FOLDERS: dict[str, str] = {}  # name -> the package of its folder


def register(name: str, folder: str | None = None) -> None:
    """Add method `name`, whose folder is the package `folder` (by default the folder of that
    name next to this module): its options now, its engine side when first used."""
    folder = folder or f"{__package__}.{name}"
    options = importlib.import_module(f"{folder}.options").OPTIONS
    if not (isinstance(options, type) and issubclass(options, Options)):
        raise TypeError(f"{folder}.options.OPTIONS is not an Options model")
    METHODS[name], FOLDERS[name] = options, folder
    REGISTRY.forget(name)


def unregister(name: str) -> None:
    """Remove method `name` (a test's toy method)."""
    del METHODS[name], FOLDERS[name]
    REGISTRY.forget(name)


def engine_module(folder: str) -> str:
    """The module of a method's folder that defines its `METHOD`."""
    task = f"{folder}.task"
    return task if importlib.util.find_spec(task) is not None else f"{folder}.prune"


class Registry(Mapping[str, "Method"]):
    """The engine's methods by name, in registration order, each imported (torch and all)
    when first asked for. Setting a registered name replaces its `Method` (a benchmark's
    reference math) until it is registered again."""

    def __init__(self) -> None:
        self._loaded: dict[str, Method] = {}

    def __getitem__(self, name: str) -> Method:
        if name not in self._loaded:
            module = importlib.import_module(engine_module(FOLDERS[name]))
            self._loaded[name] = module.METHOD
        return self._loaded[name]

    def __setitem__(self, name: str, method: Method) -> None:
        if name not in FOLDERS:
            raise KeyError(f"{name!r} is not a registered method")
        self._loaded[name] = method

    def __iter__(self) -> Iterator[str]:
        return iter(list(FOLDERS))

    def __len__(self) -> int:
        return len(FOLDERS)

    def forget(self, name: str) -> None:
        self._loaded.pop(name, None)


REGISTRY = Registry()


def get_method(name: str) -> Method:
    """The engine's method `name`; SpecError naming the methods there are."""
    if name not in FOLDERS:
        from worker.engine.errors import SpecError  # torch-free, but only the engine needs it

        raise SpecError(f"unknown method {name!r}; allowed: {', '.join(FOLDERS)}")
    return REGISTRY[name]
