"""OWL (Yin et al., ICML 2024): outlier-weighted layer-wise sparsity.

A layer's outlier ratio is the share of its Wanda scores |W_ij| * ||X_j|| (over all its pruned
matrices together) above `m` times their mean. More outliers, lower sparsity: the ratios are
mapped linearly, u_i = 2 lam (r_i - mean r) / (max r - min r), and each layer gets
s_i = s - clip(u_i + c, -lam, lam) with the one shift c that makes the parameter-weighted mean
of s_i exactly s (the reference code centres the band on the mean instead, which can leave
[s - lam, s + lam] when the ratios are skewed; clipping keeps every layer inside it).

Every layer's ratio is needed before layer 0 is pruned. Allocating from the walk's own ratios
as they come (layer i's from its pruned inputs) was tried and measured worse than uniform on
SmolLM2 (layer 0, the most outlier-heavy, is allocated before any other is seen), so the ratios
come from a survey: a dense pass of a few calibration windows (`owl.samples`) through the same
layer streamer, one forward per layer, before the walk (walker.survey). The walk then prunes
layer i at s_i; what per-row rounding leaves over is made up by the layers after it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from worker.engine.walk.stats import InputStats

_BISECT = 100


def outlier_ratio(weights: list[torch.Tensor], stats: list[InputStats], m: float) -> float:
    """Share of the Wanda scores of `weights` (each (out, in), read by the input of the same
    index in `stats`) above m x the mean of all of them."""
    scores = [
        (w.abs().float() * torch.sqrt(st.col_norm_sq.float()).reshape(1, -1)).reshape(-1)
        for w, st in zip(weights, stats, strict=True)
    ]
    if not scores:
        return 0.0
    flat = torch.cat(scores)
    return float((flat > m * flat.mean()).float().mean())


def owl_sparsities(ratios: list[float], sizes: list[int], target: float, lam: float) -> list[float]:
    """Per-layer sparsities: the linear map of the ratios, clipped to [target - lam, target + lam],
    shifted so the `sizes`-weighted mean is `target`."""
    lo, hi = min(ratios), max(ratios)
    total = max(sum(sizes), 1)
    mean = sum(r * n for r, n in zip(ratios, sizes, strict=True)) / total
    if hi <= lo or lam == 0:
        return [target] * len(ratios)
    u = [2 * lam * (r - mean) / (hi - lo) for r in ratios]

    def balance(c: float) -> float:  # weighted mean of the clipped deviations, increasing in c
        return sum(n * min(max(x + c, -lam), lam) for x, n in zip(u, sizes, strict=True)) / total

    a, b = -2 * lam, 2 * lam
    for _ in range(_BISECT):
        c = (a + b) / 2
        a, b = (c, b) if balance(c) < 0 else (a, c)
    c = (a + b) / 2
    return [target - min(max(x + c, -lam), lam) for x in u]


@dataclass
class LayerSparsity:
    index: int
    outlier_ratio: float
    sparsity: float  # what the layer was given
    params: int


@dataclass
class OWLAllocator:
    """Hands out each layer's planned sparsity in order, corrected for what the layers before
    it really pruned (per-row rounding), so the total is the target's."""

    target: float
    lam: float
    sizes: list[int]
    ratios: list[float]
    planned: list[float] = field(init=False)
    layers: list[LayerSparsity] = field(default_factory=list)
    _debt: float = 0.0  # weights the planned sparsities asked for that the masks did not prune

    def __post_init__(self) -> None:
        self.planned = owl_sparsities(self.ratios, self.sizes, self.target, self.lam)

    def allocate(self, index: int) -> float:
        """The sparsity of layer `index` (layers come in order)."""
        size = self.sizes[index]
        want = self.planned[index] + (self._debt / size if size else 0.0)
        given = min(max(want, self.target - self.lam), self.target + self.lam)
        self._debt -= (given - self.planned[index]) * size
        self.layers.append(LayerSparsity(index, self.ratios[index], given, size))
        return given

    def achieved(self, index: int, pruned: int) -> None:
        """Layer `index` pruned `pruned` weights: the next layers make up the difference."""
        x = self.layers[-1]
        assert x.index == index
        self._debt += x.sparsity * x.params - pruned

    def state_dict(self) -> dict[str, Any]:
        """What a resumed walk needs to go on allocating (JSON)."""
        layers = [asdict(x) for x in self.layers]
        return {"ratios": self.ratios, "debt": self._debt, "layers": layers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._debt = state["debt"]
        self.layers[:] = [LayerSparsity(**x) for x in state["layers"]]

    def mean(self) -> float:
        """Parameter-weighted mean of the sparsities given so far."""
        total = sum(x.params for x in self.layers)
        return sum(x.sparsity * x.params for x in self.layers) / max(total, 1)
