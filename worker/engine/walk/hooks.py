"""Forward pre-hooks that feed Linear inputs to shared `InputStats`, one per distinct input."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from worker.engine.walk.stats import InputStats, Scratch


class LayerStop(Exception):
    """Raised after the last hooked Linear has been seen: the rest of the layer is not needed."""


@dataclass
class InputGroup:
    """Linears that read the same tensor (q/k/v; gate/up) and their one accumulator."""

    stats: InputStats
    names: list[str] = field(default_factory=list)
    last: torch.Tensor | None = None  # the input already counted in this batch


class StatsCollector:
    """Groups Linears by input identity on the fly and accumulates each input once per batch.

    From the second batch on, it stops the layer right after the last hooked Linear's input
    is counted (the statistics pass discards the layer's output).
    """

    def __init__(
        self,
        linears: dict[str, nn.Module],
        want_hessian: bool,
        total_tokens: int,
        seqlen: int,
        early_stop: bool = True,
        scratch: Scratch | None = None,
    ):
        self.linears = linears
        self.scratch = scratch  # per-batch work space shared by the groups' statistics
        self.want_hessian = want_hessian
        self.total_tokens = total_tokens
        self.seqlen = seqlen
        self.groups: list[InputGroup] = []
        self._group_of: dict[str, InputGroup] = {}
        self._order: list[str] = []  # firing order in the first batch
        self._last: str | None = None
        self.early_stop = early_stop  # off when other hooks (experts) need the whole layer

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0]
            if self._last is None:
                if name in self._order:  # second batch begins: the first one was complete
                    self._last = self._order[-1]
                else:
                    self._order.append(name)
            group = self._group_of.get(name)
            if group is None:
                group = next((g for g in self.groups if g.last is x), None)
                if group is None:
                    stats = InputStats(
                        self.want_hessian, self.total_tokens, self.seqlen, self.scratch
                    )
                    group = InputGroup(stats)
                    self.groups.append(group)
                group.names.append(name)
                self._group_of[name] = group
            if group.last is not x:
                group.stats.add(x.detach())
                group.last = x
            if name == self._last and self.early_stop:
                raise LayerStop

        return hook

    @contextmanager
    def hooks(self):
        handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in self.linears.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            for g in self.groups:
                g.last = None
