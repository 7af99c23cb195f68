"""The method registry: each method under the name the API uses (its options model is
registered under the same name in service/methods.py)."""

from __future__ import annotations

from worker.engine.errors import SpecError
from worker.engine.methods import smp as smp_method
from worker.engine.methods.base import Method, MethodResult
from worker.engine.methods.magnitude import magnitude
from worker.engine.methods.pattern_lock import pattern_lock
from worker.engine.methods.sparsegpt import sparsegpt
from worker.engine.methods.wanda import wanda
from worker.engine.train.gradual import GradualMagnitude
from worker.engine.train.smp_task import LearnedMask
from worker.engine.train.soft_movement import build_movement

REGISTRY: dict[str, Method] = {
    "magnitude": Method(magnitude, needs=None),
    "wanda": Method(wanda, needs="norms"),
    "sparsegpt": Method(sparsegpt, needs="hessian"),
    "smp": Method(smp_method.smp, needs=smp_method.needs, task=LearnedMask.smp),
    "movement": Method(None, needs=None, task=build_movement),
    "gmp": Method(None, needs=None, task=GradualMagnitude.build),
    "pattern_lock": Method(pattern_lock, needs=None),
}


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown method {name!r}; allowed: {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "Method", "MethodResult", "get_method"]
