"""Mixture-of-experts weights stored fused as 3-D parameters (E, out, in): one prunable target
per expert matrix, and a hook on the experts module that feeds each expert's statistics with
exactly the tokens routed to it.
"""

from __future__ import annotations

import fnmatch
import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from worker.engine.errors import UnsupportedModelError
from worker.engine.model.hf_types import HFModule
from worker.engine.walk.stats import InputStats, Scratch

FIRST = ("gate_up_proj", "up_proj")  # reads the token; gate_up_proj holds [gate; up]
SECOND = ("down_proj",)  # reads the gated activation


@dataclass(eq=False)
class ExpertSlice:
    """Expert `index` of fused parameter `name` of `module`, seen as an (out, in) weight."""

    module: nn.Module
    name: str
    index: int
    transposed: bool  # stored (E, in, out)

    def get_weight(self) -> torch.Tensor:
        w = getattr(self.module, self.name).data[self.index]
        return w.t() if self.transposed else w

    def set_weight(self, w: torch.Tensor) -> None:
        dst = getattr(self.module, self.name).data[self.index]
        dst.copy_((w.t() if self.transposed else w).to(dst.dtype))


def is_experts(module: nn.Module) -> bool:
    """A module holding fused expert projections (transformers' experts interface)."""
    p = getattr(module, FIRST[0], None)
    if p is None:
        p = getattr(module, FIRST[1], None)
    return (
        isinstance(p, nn.Parameter)
        and p.dim() == 3
        and isinstance(getattr(module, SECOND[0], None), nn.Parameter)
    )


def first_name(module: nn.Module) -> str:
    return next(n for n in FIRST if isinstance(getattr(module, n, None), nn.Parameter))


def is_transposed(module: HFModule) -> bool:
    """Stored (E, in, out)? The experts interface says so; else the shapes do: a first
    projection (E, out, H) feeds a down projection (E, H, I)."""
    if hasattr(module, "is_transposed"):
        return bool(module.is_transposed)
    return getattr(module, first_name(module)).shape[-1] != module.down_proj.shape[-2]


def experts_modules(layer: nn.Module, prefix: str) -> dict[str, nn.Module]:
    return {f"{prefix}.{n}" if n else prefix: m for n, m in layer.named_modules() if is_experts(m)}


def expert_targets(layer: nn.Module, prefix: str, skip=()) -> dict[str, ExpertSlice]:
    """`<module>.<param>[e]` -> slice, for every expert of every experts module in `layer`."""
    found = {}
    for mname, module in experts_modules(layer, prefix).items():
        t = is_transposed(module)
        for pname in (first_name(module), SECOND[0]):
            for e in range(getattr(module, pname).shape[0]):
                full = f"{mname}.{pname}[{e}]"
                if not any(fnmatch.fnmatch(full, pat) for pat in skip):
                    found[full] = ExpertSlice(module, pname, e, t)
    return found


def router_linears(layer: nn.Module, prefix: str, linears: dict[str, nn.Module]) -> set[str]:
    """Linears that route tokens (out_features == the expert count of the same layer): dense."""
    counts = {getattr(m, SECOND[0]).shape[0] for m in experts_modules(layer, prefix).values()}
    return {n for n, m in linears.items() if getattr(m, "out_features", None) in counts}


def gated(module: HFModule, y: torch.Tensor) -> torch.Tensor:
    """The activation the expert's down projection reads, from its first projection's output."""
    if getattr(module, "has_gate", first_name(module) == "gate_up_proj"):
        if hasattr(module, "_apply_gate"):
            return module._apply_gate(y)
        gate, up = y.chunk(2, dim=-1)
        return module.act_fn(gate) * up
    return module.act_fn(y)


@dataclass
class ExpertStats:
    """Per expert: statistics of its first projection's input and of its down projection's."""

    first: list[InputStats]
    second: list[InputStats]
    tokens: list[int] = field(default_factory=list)


class RoutedStats:
    """Forward pre-hooks on experts modules: expert e's accumulators see only its tokens."""

    def __init__(
        self,
        modules: dict[str, HFModule],
        want_hessian: bool,
        total_tokens: int,
        scratch: Scratch | None = None,
    ):
        self.modules = modules
        self.stats: dict[str, ExpertStats] = {}
        for name, m in modules.items():
            n = m.down_proj.shape[0]
            mk = [InputStats(want_hessian, total_tokens, 1, scratch) for _ in range(2 * n)]
            self.stats[name] = ExpertStats(mk[:n], mk[n:], [0] * n)

    def stats_of(self, target_name: str) -> InputStats:
        mname, _, rest = target_name.rpartition(".")
        pname, _, idx = rest[:-1].partition("[")
        es = self.stats[mname]
        return (es.second if pname in SECOND else es.first)[int(idx)]

    def _hook(self, name: str):
        module = self.modules[name]
        sig = inspect.signature(module.forward)

        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            bound = list(sig.bind(*args, **kwargs).arguments.values())
            x, index = (bound + [None, None])[:2]
            if not (
                torch.is_tensor(index)
                and not index.is_floating_point()
                and index.shape[0] == x.reshape(-1, x.shape[-1]).shape[0]
            ):
                raise UnsupportedModelError(
                    f"{name}: the experts call does not pass the routed expert indices "
                    "(tokens, top-k) after the hidden states; cannot tell which tokens each "
                    "expert receives"
                )
            self.add(name, x.reshape(-1, x.shape[-1]), index.reshape(index.shape[0], -1))

        return hook

    @torch.no_grad()
    def add(self, name: str, x: torch.Tensor, index: torch.Tensor) -> None:
        """x: (tokens, hidden); index: (tokens, top-k) expert ids (ids >= E are not routed)."""
        module, es = self.modules[name], self.stats[name]
        first = getattr(module, first_name(module))
        bias = getattr(module, f"{first_name(module)}_bias", None)
        for e in range(len(es.first)):
            xe = x[(index == e).any(dim=-1)]  # (n_e, hidden): the tokens routed to e
            if xe.shape[0] == 0:
                continue
            es.first[e].add(xe)
            w = first[e] if is_transposed(module) else first[e].t()  # (hidden, out)
            y = xe @ w.to(xe.dtype)
            if bias is not None and getattr(module, "has_bias", True):
                y = y + bias[e]
            es.second[e].add(gated(module, y))
            es.tokens[e] += xe.shape[0]

    @contextmanager
    def hooks(self):
        handles = [
            m.register_forward_pre_hook(self._hook(n), with_kwargs=True)
            for n, m in self.modules.items()
        ]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def expert_groups(targets: dict[str, ExpertSlice], routed: RoutedStats, warnings: list[str]):
    """(names, group) per expert matrix; group None (magnitude) for an expert no calibration
    token was routed to, with a warning naming it."""
    from worker.engine.walk.hooks import InputGroup

    groups: list[tuple[list[str], InputGroup | None]] = []
    for name in targets:
        stats = routed.stats_of(name)
        if stats.tokens == 0:
            warnings.append(
                f"{name}: no calibration token was routed to this expert; pruned by magnitude"
            )
            groups.append(([name], None))
        else:
            groups.append(([name], InputGroup(stats, [name])))
    return groups
