"""OWL (Yin et al., ICML 2024): outlier-weighted layer-wise sparsity, allocated in the one walk.

A layer's outlier ratio is the share of its Wanda scores |W_ij| * ||X_j|| (over all its pruned
matrices together) above `m` times their mean. The paper maps the ratios of all layers
linearly into [s - lam, s + lam] (more outliers, lower sparsity) with the mean at s, which
needs every layer's ratio before layer 0 is pruned: the reference code walks the dense model
once for the ratios and a second time to prune.

Here the ratios come from the walk that prunes: layer i's ratio is computed from the inputs the
walker has just collected for it (the outputs of the already pruned layers), right before it
is pruned, so no extra pass. Its sparsity is the paper's map over the ratios seen so far
(layers 0..i: their min, max and parameter-weighted mean), clipped to [s - lam, s + lam], then
limited so that the layers still to come can bring the parameter-weighted mean back to s
exactly: the last layer takes whatever the budget needs, which is always inside the band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from worker.engine.stats import InputStats


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


@dataclass
class LayerSparsity:
    index: int
    outlier_ratio: float
    sparsity: float  # what the layer was given
    params: int


@dataclass
class OWLAllocator:
    """Per-layer sparsities whose parameter-weighted mean is `target`, each within
    [target - lam, target + lam]. `sizes[i]`: the number of weights pruned in layer i."""

    target: float
    lam: float
    sizes: list[int]
    layers: list[LayerSparsity] = field(default_factory=list)
    _pruned: float = 0.0  # weights given to the layers so far (their sparsity x size)

    def allocate(self, index: int, ratio: float) -> float:
        """The sparsity of layer `index` (layers come in order), from its outlier ratio."""
        s, lam = self.target, self.lam
        size = self.sizes[index]
        seen = [(x.outlier_ratio, x.params) for x in self.layers] + [(ratio, size)]
        lo, hi = min(r for r, _ in seen), max(r for r, _ in seen)
        mean = sum(r * n for r, n in seen) / max(sum(n for _, n in seen), 1)
        dev = 2 * lam * (ratio - mean) / (hi - lo) if hi > lo else 0.0
        wanted = s - min(max(dev, -lam), lam)  # more outliers: fewer weights pruned
        rest = sum(self.sizes[index + 1 :])
        budget = s * sum(self.sizes) - self._pruned  # weights still to prune, this layer on
        lowest = (budget - (s + lam) * rest) / size if size else s
        highest = (budget - (s - lam) * rest) / size if size else s
        given = min(max(wanted, lowest, s - lam), highest, s + lam)
        self._pruned += given * size
        self.layers.append(LayerSparsity(index, ratio, given, size))
        return given

    def achieved(self, index: int, pruned: int) -> None:
        """Layer `index` pruned `pruned` weights (rounding per row may differ from what it was
        given): the layers still to come make up the difference."""
        x = self.layers[-1]
        assert x.index == index
        self._pruned += pruned - x.sparsity * x.params

    def mean(self) -> float:
        """Parameter-weighted mean of the sparsities given so far."""
        total = sum(x.params for x in self.layers)
        return sum(x.sparsity * x.params for x in self.layers) / max(total, 1)
