"""The uses of the training engine: what trains and how the mask comes out.

`Recovery` (Prune Once for All's distilled sparse fine-tuning): masks fixed, kept weights
train. A method's own training task (SMP's learned mask, the tasks of movement and gmp that
prune while training) is in its folder, worker/engine/methods/<name>/task.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from worker.engine.prune.mask_state import MaskState
from worker.engine.prune.masks import Pattern
from worker.engine.train.masked import KeptValues, attach_kept, bake, original, transposed
from worker.engine.train.schedule import Schedule

Modules = dict[str, nn.Module]  # full name -> Linear, in pruning order


@dataclass
class TaskInputs:
    """What a method's training task is built from (run.py fills it from the spec)."""

    modules: Modules
    masks: MaskState  # from the one-shot walk (empty for methods that prune while training)
    scores: dict[str, torch.Tensor]  # initial scores from the walk (SMP)
    pattern: Pattern  # the target
    dense_weight: Callable[[str], torch.Tensor]  # (out, in) weight before pruning, by name
    options: Any = None  # the method's options model
    schedule: Schedule | None = None  # movement, gmp


class _MaskAtEnd:
    """A task whose steps need nothing besides the optimizer's; `finish` bakes `_final()`."""

    modules: Modules

    def before_step(self, step: int) -> None:
        pass

    def after_step(self, step: int) -> None:
        pass

    def _final(self, name: str) -> torch.Tensor:
        raise NotImplementedError

    def finish(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, module in self.modules.items():
            out[name] = self._final(name)
            bake(module, out[name])
        return out


class _HasMask(Protocol):
    def mask(self) -> torch.Tensor: ...


class Masks(Protocol):
    """What Recovery reads of the masks: MaskState, or a training process's own copy."""

    @property
    def modules(self) -> Mapping[str, _HasMask]: ...


class Recovery(_MaskAtEnd):
    """Only the kept weights are parameters (masked.KeptValues): fp32 master, gradient and
    AdamW state for the kept entries alone. `packed_masks`: masks held as bits (FSDP ranks)."""

    stage, trainable = "recover", "kept weights of the pruned Linears (masks fixed)"
    default_lr = 1e-4

    def __init__(self, modules: Modules, masks: Masks, packed_masks: bool = False):
        self.modules, self.masks, self.packed = modules, masks, packed_masks

    def attach(self) -> dict[str, nn.Parameter]:
        params = {}
        for name, module in self.modules.items():
            pruned = self.masks.modules[name].mask()
            attach_kept(module, KeptValues(pruned, transposed(module), self.packed))
            params[name] = original(module)
        return params

    def _final(self, name: str) -> torch.Tensor:
        return self.masks.modules[name].mask()
