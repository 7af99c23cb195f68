"""The pruning methods: a method is one folder here and one registry line below.

A method's folder `<name>/` holds everything true of it:
- `options.py`: its options model (`OPTIONS`, a subclass of `options.Options`) and its facts
  (the statistics it needs, whether it walks, learns or prunes on a schedule, which profiles
  and refinements it supports, its defaults); the API validates, documents and plans from it;
- `prune.py`: its one-shot math (weights, statistics, pattern, options) -> MethodResult;
- `task.py`: the training task of a method that learns.
The one of `task.py` (if there is one) or `prune.py` defines `METHOD`, the engine's `Method`
(base.py). This package, `options.py`, `registry.py` and each folder's `__init__.py` and
`options.py` never import torch: the API process reads the methods from here.
"""

from __future__ import annotations

from worker.engine.methods.options import Options
from worker.engine.methods.registry import (
    METHODS,
    REGISTRY,
    get_method,
    register,
    unregister,
)

register("magnitude")
register("wanda")
register("sparsegpt")
register("smp")
register("movement")
register("gmp")
register("pattern_lock")

__all__ = ["METHODS", "REGISTRY", "Options", "get_method", "register", "unregister"]
