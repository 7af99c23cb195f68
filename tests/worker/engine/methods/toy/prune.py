"""The toy method's math: prune the weights closest to `options.centre` in every row."""

from __future__ import annotations

from worker.engine.methods.base import Method, MethodResult
from worker.engine.prune.masks import lowest_per_row


def toy(weights, stats, pattern, options):
    masks = [
        lowest_per_row((w - options.centre).abs(), int(w.shape[1] * pattern.ratio)) for w in weights
    ]
    return MethodResult([w.masked_fill(m, 0) for w, m in zip(weights, masks, strict=True)], masks)


METHOD = Method(toy)
