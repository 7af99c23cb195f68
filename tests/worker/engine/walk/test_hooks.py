"""StatsCollector on real layers: Linears reading one tensor share one accumulator, and the
early stop after the last hooked Linear still counts every input of every batch.
"""

from __future__ import annotations

import functools

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.worker.engine.support import LAYERS_PATH, layers_of
from worker.engine.model.model_io import prunable_linears
from worker.engine.walk.hooks import StatsCollector
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walker import capture, run_layer

GROUPS = {  # Linears of one layer grouped by the tensor they read, in firing order
    "llama": [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        ["self_attn.o_proj"],
        ["mlp.gate_proj", "mlp.up_proj"],
        ["mlp.down_proj"],
    ],
    "opt": [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        ["self_attn.out_proj"],
        ["fc1"],
        ["fc2"],
    ],
    "gpt2": [["attn.c_attn"], ["attn.c_proj"], ["mlp.c_fc"], ["mlp.c_proj"]],
    "phi3": [["self_attn.qkv_proj"], ["self_attn.o_proj"], ["mlp.gate_up_proj"], ["mlp.down_proj"]],
}


def inputs_in_full_forward(model, layer, names, ids):
    """Every input of each named Linear of `layer` in one plain forward: (tokens, in)."""
    seen, handles = {}, []
    for name in names:

        def hook(mod, args, name=name):
            seen[name] = args[0].reshape(-1, args[0].shape[-1]).float()

        handles.append(layer.get_submodule(name).register_forward_pre_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    return seen


@functools.cache
def collect_layer1(model_dir, arch, nseq=5):
    """Layer 1's StatsCollector after a pass over nseq samples in batches of 2, 2, 1, and
    the inputs each of its Linears receives in one plain forward of the model.
    """
    model = AutoModelForCausalLM.from_pretrained(model_dir(arch)).eval()
    layers = layers_of(model, arch)
    ids = torch.randint(4, 260, (nseq, 32), generator=torch.Generator().manual_seed(0))
    cap = capture(LayerStreamer(model, layers, torch.device("cpu")), ids, batch=2)
    prefix = f"{LAYERS_PATH[arch]}.1"
    hidden = cap.hidden.clone()
    run_layer(layers[0], cap.hidden, hidden, cap.calls[0], cap.batch)
    collector = StatsCollector(prunable_linears(layers[1], prefix), True, ids.numel(), ids.shape[1])
    with collector.hooks():
        run_layer(layers[1], hidden, None, cap.calls[1], cap.batch)
    names = [[n.removeprefix(prefix + ".") for n in g.names] for g in collector.groups]
    direct = inputs_in_full_forward(model, layers[1], [n for g in names for n in g], ids)
    return collector, names, direct


@pytest.mark.parametrize("arch", sorted(GROUPS))
def test_groups_and_statistics_over_several_batches(tiny_model_dir, arch):
    collector, names, direct = collect_layer1(tiny_model_dir, arch)
    assert names == GROUPS[arch]
    for group, short in zip(collector.groups, names, strict=True):
        x = direct[short[0]]  # (tokens, in): every token of every batch counted once
        torch.testing.assert_close(group.stats.sumsq, x.square().sum(0), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(group.stats.xtx, x.t() @ x, rtol=1e-4, atol=1e-3)
        assert group.last is None  # no tensor kept alive after the pass


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])  # opt flattens MLP input to 2-D
def test_statistics_are_means_over_sequences(tiny_model_dir, arch):
    collector, _, _ = collect_layer1(tiny_model_dir, arch)
    assert [g.stats.nsamples for g in collector.groups] == [5] * len(collector.groups)
