"""Helpers shared by the engine tests: architecture table, statistics from given inputs,
correlated inputs, reference masks.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

from service.sparsity import parse_sparsity
from worker.engine.prune.masks import Pattern
from worker.engine.walk.stats import InputStats

ARCHS = ["llama", "mistral", "qwen2", "gemma", "gemma2", "phi3", "gpt2", "gpt_neox", "opt"]

# Where each architecture keeps its decoder layers, written out by hand so the tests do not
# rely on the engine's own generic search.
LAYERS_PATH = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "phi3": "model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "opt": "model.decoder.layers",
}


def layers_of(model: nn.Module, arch: str) -> nn.ModuleList:
    return model.get_submodule(LAYERS_PATH[arch])


def linear_weights(layers: nn.ModuleList, prefix: str) -> dict[str, torch.Tensor]:
    """Every Linear (or GPT-2 Conv1D) weight inside `layers`, as (out, in), by full name."""
    found = {}
    for name, module in layers.named_modules():
        if isinstance(module, nn.Linear):
            found[f"{prefix}.{name}"] = module.weight.detach()
        elif type(module).__name__ == "Conv1D":  # stores (in, out)
            found[f"{prefix}.{name}"] = module.weight.detach().t()
    return found


def stats_from(xs: list[torch.Tensor], want_hessian: bool = True) -> InputStats:
    """InputStats fed with the batches `xs`, each (B, T, in)."""
    total = sum(x.shape[0] * x.shape[1] for x in xs)
    stats = InputStats(want_hessian, total)
    for x in xs:
        stats.add(x)
    return stats


def correlated_inputs(n_tokens: int, cols: int, seed: int = 0) -> torch.Tensor:
    """(n_tokens, cols) inputs whose features correlate (random mixing) and differ in scale."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n_tokens, cols, generator=g)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5
    scale = torch.exp(torch.randn(cols, generator=g))  # log-normal feature scales
    return (z @ mix + 0.3 * z) * scale


def stable_lowest_per_row(score: torch.Tensor, k: int) -> torch.Tensor:
    """Reference (Wanda's code): the first k indices of a stable ascending sort of each row."""
    idx = torch.sort(score, dim=-1, stable=True)[1][:, :k]
    mask = torch.zeros_like(score, dtype=torch.bool)
    return mask.scatter_(1, idx, True)


def reference_n_of_m(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M as the reference loop (locuslab/wanda): per group of m columns,
    scatter(ii + topk(group, n, largest=False)), so ties fall as topk puts them; a narrower
    tail group (which the reference does not handle) loses its min(n, width) lowest, stably.
    """
    mask = torch.zeros_like(score, dtype=torch.bool)
    for c in range(0, score.shape[1], m):
        group = score[:, c : c + m]
        if group.shape[1] == m:
            mask.scatter_(1, c + torch.topk(group, n, dim=1, largest=False)[1], True)
        else:
            mask[:, c : c + m] = stable_lowest_per_row(group, min(n, group.shape[1]))
    return mask


def zeros_per_group(w: torch.Tensor, m: int) -> torch.Tensor:
    """(rows, full groups) count of zeros in each group of m consecutive input weights."""
    rows, cols = w.shape
    full = cols - cols % m
    return (w[:, :full] == 0).reshape(rows, full // m, m).sum(dim=2)


def pattern(sparsity) -> Pattern:
    """The engine's Pattern for a sparsity as users write it (0.5, "2:4"); also for an N:M the
    contract refuses, such as "3:7": the math holds for any M, and groups of 7 test what
    powers of two cannot (groups that do not tile SparseGPT's 128-column blocks)."""
    if isinstance(sparsity, str) and ":" in sparsity:
        n, m = (int(x) for x in sparsity.split(":"))
        return Pattern(n / m, n, m)
    return parse_sparsity(sparsity)


def walk_model(model, layers_name: str, ids, method: str = "wanda", sparsity=0.5, warnings=None):
    """Walk `model` with `method` as run() would (same targets), without loading or saving;
    warnings are appended to `warnings`. Returns the mask state."""
    from service.methods import METHODS
    from worker.engine.methods import get_method
    from worker.engine.progress import Reporter
    from worker.engine.prune.mask_state import MaskState
    from worker.engine.prune.pruner import Pruner
    from worker.engine.run import layer_targets
    from worker.engine.walk.streaming import LayerStreamer
    from worker.engine.walk.walker import walk

    layers = model.get_submodule(layers_name)
    warn = (warnings if warnings is not None else []).append
    m, options = get_method(method), METHODS[method]()
    masks = MaskState()
    targets = [layer_targets(layer, f"{layers_name}.{i}") for i, layer in enumerate(layers)]
    pruner = Pruner(m, pattern(sparsity), options, masks, warn)
    streamer = LayerStreamer(model, layers, torch.device("cpu"))
    walk(streamer, ids, m.stats_for(options), targets, pruner, Reporter(), warn=warn)
    return masks


def saved_tensors(directory) -> dict[str, torch.Tensor]:
    """Every tensor of a saved checkpoint (all its safetensors shards), by name."""
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(f))
    return out


class Killed(BaseException):  # as a SIGKILL: no handler of ours sees it
    pass


def killed_then_resumed(spec, out, between=lambda: None):
    """Run `spec` into `out` until a patched step raises Killed, check the walk's checkpoint
    is there and nothing is published, call `between()`, run again: the second report."""
    import pytest

    from service.schemas import resume_dir
    from worker.engine.run import run
    from worker.engine.walk.walk_resume import STATE

    with pytest.raises(Killed):
        run(spec, out)
    assert (resume_dir(out) / STATE).is_file() and not out.exists()
    between()
    return run(spec, out)
