"""The walker on tiny models of every architecture: captured layer arguments reproduce the
model's own forward, and pruning propagates pruned activations to the next layer.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.worker.engine.support import ARCHS, LAYERS_PATH, layers_of, stable_lowest_per_row
from worker.engine.methods import get_method
from worker.engine.methods.wanda.options import WandaOptions
from worker.engine.model.model_io import prunable_linears
from worker.engine.progress import Reporter
from worker.engine.prune.mask_state import MaskState
from worker.engine.prune.masks import Pattern
from worker.engine.prune.pruner import Pruner
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walker import capture, run_layer, walk

# Sliding windows shorter than the sequence, so per-layer-type masks matter.
OVERRIDES = {"gemma2": {"sliding_window": 8}, "mistral": {"sliding_window": 8}}


def load(model_dir, arch: str, attn: str = "default"):
    kwargs = dict(OVERRIDES.get(arch, {}))
    if attn != "default":
        kwargs["attn_implementation"] = attn
    return AutoModelForCausalLM.from_pretrained(model_dir(arch), **kwargs).eval()


def token_ids(n: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 260, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def last_layer_output(model, layers, ids: torch.Tensor) -> torch.Tensor:
    """What the model's own forward feeds its final norm: the last decoder layer's output."""
    seen = {}

    def hook(module, args, output):
        seen["out"] = output[0] if isinstance(output, tuple) else output

    handle = layers[-1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        handle.remove()
    return seen["out"]


# eager attention needs the captured attention masks (sdpa often infers causality itself)
@pytest.mark.parametrize("attn", ["default", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_dense_walk_reproduces_the_model_forward(tiny_model_dir, arch, attn):
    model = load(tiny_model_dir, arch, attn)
    layers = layers_of(model, arch)
    ids = token_ids(5, 32)
    # batch 2 over 5 samples: calls of size 2 and 1 must both be recorded and replayed
    cap = capture(LayerStreamer(model, layers, torch.device("cpu")), ids, batch=2)
    assert cap.hidden.shape == (5, 32, model.config.hidden_size)
    assert all(sorted(calls) == [1, 2] for calls in cap.calls)
    inps, outs = cap.hidden, torch.empty_like(cap.hidden)
    for i, layer in enumerate(layers):
        run_layer(layer, inps, outs, cap.calls[i], cap.batch)
        inps, outs = outs, inps
    expected = last_layer_output(model, layers, ids)
    torch.testing.assert_close(inps, expected, rtol=1e-4, atol=1e-5)
    for layer in layers:
        assert "forward" not in vars(layer)  # the recorders are gone


def test_sliding_window_matters_for_gemma2(tiny_model_dir):
    """Guards the test above: with a window of 8 the output differs from a full causal one."""
    ids = token_ids(2, 32)
    outs = []
    for window in (8, 4096):
        model = AutoModelForCausalLM.from_pretrained(
            tiny_model_dir("gemma2"), sliding_window=window
        )
        outs.append(last_layer_output(model.eval(), layers_of(model, "gemma2"), ids))
    assert not torch.allclose(outs[0], outs[1], atol=1e-3)


def wanda_masks_from_forward(model, layer, weights: dict[str, torch.Tensor], ids):
    """Wanda 50% masks of `weights` scored on the inputs their Linears in `layer` receive
    in a full forward of `model`.
    """
    sumsq, handles = {}, []
    for name in weights:

        def hook(mod, args, name=name):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            sumsq[name] = sumsq.get(name, 0) + x.square().sum(0)

        handles.append(layer.get_submodule(name).register_forward_pre_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    return {
        n: stable_lowest_per_row(w.abs() * sumsq[n].sqrt(), w.shape[1] // 2)
        for n, w in weights.items()
    }


def test_next_layer_sees_pruned_activations(tiny_model_dir):
    arch = "llama"
    model = load(tiny_model_dir, arch)
    layers = layers_of(model, arch)
    ids = token_ids(4, 32, seed=1)
    names = [n for n, m in layers[1].named_modules() if isinstance(m, torch.nn.Linear)]
    dense1 = {n: layers[1].get_submodule(n).weight.detach().clone() for n in names}
    from_dense_model = wanda_masks_from_forward(model, layers[1], dense1, ids)

    pruner = Pruner(get_method("wanda"), Pattern(0.5), WandaOptions(), MaskState(), print)
    targets = [prunable_linears(t, f"{LAYERS_PATH[arch]}.{i}") for i, t in enumerate(layers)]
    streamer = LayerStreamer(model, layers, torch.device("cpu"))
    walk(streamer, ids, "norms", targets, pruner, Reporter())
    walked = {n: layers[1].get_submodule(n).weight == 0 for n in names}

    # Reference: layer 1 dense again (its Linears were scored together before any was
    # pruned), layer 0 pruned: layer 1's Linears see exactly what the walker fed them.
    for n in names:
        layers[1].get_submodule(n).weight.data.copy_(dense1[n])
    from_pruned_model = wanda_masks_from_forward(model, layers[1], dense1, ids)

    def mismatch(masks):
        return sum((walked[n] != masks[n]).sum().item() for n in names)

    total = sum(w.numel() for w in dense1.values())
    assert mismatch(from_pruned_model) <= total * 1e-4  # float order may flip a near-tie
    assert mismatch(from_dense_model) > total * 0.01  # so the check above can tell


def test_the_last_layer_is_not_run_again_after_pruning(tiny_model_dir):
    """No layer reads the last layer's output, so the walk runs it once (statistics only);
    every other layer runs again after pruning to feed the next."""
    arch = "llama"
    model = load(tiny_model_dir, arch)
    layers = layers_of(model, arch)
    ids = token_ids(6, 32)  # one batch (TOKENS_PER_BATCH // 32 >= 6)
    calls = [0] * len(layers)

    def counter(i):
        def hook(module, args, output):
            calls[i] += 1

        return hook

    handles = [layer.register_forward_hook(counter(i)) for i, layer in enumerate(layers)]
    pruner = Pruner(get_method("wanda"), Pattern(0.5), WandaOptions(), MaskState(), print)
    targets = [prunable_linears(t, f"{LAYERS_PATH[arch]}.{i}") for i, t in enumerate(layers)]
    seen = []
    streamer = LayerStreamer(model, layers, torch.device("cpu"))

    def note(i, inps, layer):
        seen.append(inps is None)

    walk(streamer, ids, "norms", targets, pruner, Reporter(), after_layer=note)
    for h in handles:
        h.remove()
    # a forward hook fires when the layer returns: the statistics pass returns only on the
    # first batch (later ones stop at the last Linear), the pass after pruning on every batch;
    # capture runs layer 0 once more to learn the form of its output
    assert calls == [3] + [2] * (len(layers) - 2) + [1]
    assert seen == [False] * (len(layers) - 1) + [True]  # no stale input for a last checkpoint
