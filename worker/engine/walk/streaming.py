"""The one way a model's parts reach the compute device: the shell (embeddings, rotary,
final norm, head) for a whole stage, decoder layers one at a time — for the walker and for
a full forward (evaluation) alike. In lazy mode (`weights`, see lazy.py) a layer's tensors
exist only between `load` and `unload`, read from the checkpoint; `commit` writes a finished
layer to the streaming output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from worker.engine.memory import release
from worker.engine.model.hf_types import HFModel


class LayerStreamer:
    """Moves `model`'s shell and its decoder `layers` to `device` and back to the CPU."""

    def __init__(self, model: HFModel, layers: nn.ModuleList, device: torch.device, weights=None):
        self.model, self.layers, self.device = model, layers, device
        self.weights = weights  # LazyWeights, or None when the whole model is in memory
        self.on_cpu = device.type == "cpu" and weights is None

    @property
    def lazy(self) -> bool:
        return self.weights is not None

    def load(self, i: int) -> nn.Module:
        """Layer i, on the device."""
        if self.lazy:
            return self.weights.materialize(i, self.device)
        layer = self.layers[i]
        return layer if self.on_cpu else layer.to(self.device)

    def unload(self, i: int) -> None:
        if self.lazy:
            self.weights.release(i)
        elif not self.on_cpu:
            self.layers[i].to("cpu")

    def commit(self, i: int) -> None:
        """Layer i (loaded) is final: the lazy output writes it now."""
        if self.lazy:
            self.weights.commit(i)

    def trim(self) -> None:
        """Lazy mode: give the freed heap back to the OS now (e.g. a statistics pass's
        temporaries, before the pass after pruning allocates its own); eager mode keeps it."""
        if self.lazy:
            release()

    @contextmanager
    def layer(self, i: int) -> Iterator[nn.Module]:
        try:
            yield self.load(i)
        finally:
            self.unload(i)

    @contextmanager
    def shell(self, tokens: torch.Tensor | None = None) -> Iterator[None]:
        """Everything but the decoder layers on the device for the duration (lazy: read from
        the checkpoint for the duration, and gone again after; with `tokens`, for a forward
        of those token ids only up to the first layer, see LazyWeights.load_shell)."""
        if self.lazy:
            self.weights.load_shell(self.device, tokens)
            try:
                yield
            finally:
                self.weights.release_shell()
            return
        if self.device.type == "cpu":
            yield
            return
        inside = {id(m) for m in self.layers.modules()}
        parts = [m for m in self.model.modules() if id(m) not in inside]
        for m in parts:
            m._apply(lambda t: t.to(self.device), recurse=False)
        try:
            yield
        finally:
            for m in parts:
                m._apply(lambda t: t.to("cpu"), recurse=False)

    @contextmanager
    def forward(self) -> Iterator[None]:
        """A whole-model forward inside runs with one decoder layer on the device at a time."""
        if self.on_cpu:
            yield
            return
        handles = []
        for i, layer in enumerate(self.layers):
            handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: self.load(i) and None))
            handles.append(layer.register_forward_hook(lambda m, a, o, i=i: self.unload(i)))
        try:
            with self.shell():
                yield
        finally:
            for h in handles:
                h.remove()
