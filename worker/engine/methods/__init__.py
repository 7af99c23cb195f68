"""The method registry: each method registered under the name the API uses."""

from __future__ import annotations

from service.schemas import METHODS as API_METHODS
from worker.engine.errors import SpecError
from worker.engine.methods.base import Method, MethodResult
from worker.engine.methods.magnitude import magnitude
from worker.engine.methods.sparsegpt import sparsegpt
from worker.engine.methods.wanda import wanda

REGISTRY: dict[str, Method] = {
    "magnitude": Method("magnitude", magnitude, needs=None),
    "wanda": Method("wanda", wanda, needs="norms"),
    "sparsegpt": Method("sparsegpt", sparsegpt, needs="hessian"),
}
assert tuple(sorted(REGISTRY)) == tuple(sorted(API_METHODS)), "registry and contract disagree"


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown method {name!r}; allowed: {', '.join(REGISTRY)}") from None


__all__ = ["REGISTRY", "Method", "MethodResult", "get_method"]
