"""Loading (safetensors only, local dir or hub id), finding decoder layers generically, and
the atomic save.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from tests.worker.engine.support import ARCHS, LAYERS_PATH, linear_weights
from worker.engine.errors import ModelLoadError, UnsupportedModelError
from worker.engine.model.model_io import (
    decoder_layers,
    get_weight,
    load_model,
    locate_model,
    prunable_linears,
    save_model,
    set_weight,
)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_layers_found_generically(tiny_model_dir, arch):
    model, tok = load_model(tiny_model_dir(arch))
    name, layers = decoder_layers(model)
    assert name == LAYERS_PATH[arch]
    assert layers is model.get_submodule(LAYERS_PATH[arch])
    assert not model.training and tok is not None
    expected = linear_weights(layers[0], f"{name}.0")
    assert sorted(prunable_linears(layers[0], f"{name}.0")) == sorted(expected)


def test_skip_patterns(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("llama"))
    layer = model.model.layers[1]
    all_names = prunable_linears(layer, "model.layers.1")
    kept = prunable_linears(layer, "model.layers.1", ["*.mlp.*", "*.q_proj"])
    assert sorted(kept) == sorted(n for n in all_names if ".mlp." not in n and "q_proj" not in n)
    assert len(kept) == 3  # k, v, o


def test_conv1d_weights_read_and_written_as_out_in(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("gpt2"))
    conv = model.transformer.h[0].mlp.c_fc  # Conv1D stores (in=64, out=256)
    w = get_weight(conv)
    assert w.shape == (conv.nf, conv.weight.shape[0])
    x = torch.randn(3, w.shape[1])
    torch.testing.assert_close(conv(x), x @ w.t() + conv.bias)
    new = torch.randn_like(w)
    set_weight(conv, new)
    assert torch.equal(get_weight(conv), new)


def test_dtype_option(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("llama"), "bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_pickle_only_checkpoint_is_refused(tiny_model_dir, tmp_path):
    src = tiny_model_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(src)
    # transformers 5 always writes safetensors, so lay out an old pickle checkpoint by hand
    for f in src.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, tmp_path / f.name)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(
        ModelLoadError, match=r"only pickle weights \(pytorch_model.bin\).*safetensors"
    ):
        load_model(tmp_path)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)


def test_not_a_causal_lm_is_unsupported(tmp_path):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(UnsupportedModelError, match="T5Config"):
        load_model(tmp_path)


def test_model_without_decoder_layers_is_unsupported():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.LayerNorm(4), nn.LayerNorm(4)])
            self.head = nn.Linear(4, 4)

    with pytest.raises(UnsupportedModelError, match="Flat"):
        decoder_layers(Flat())


def test_local_directory_resolves_as_is(tmp_path):
    assert locate_model(str(tmp_path)) == tmp_path


@pytest.mark.parametrize("bad", ["not a model", "a/b/c", "/no/such/dir", "model-without-org"])
def test_neither_directory_nor_hub_id_is_refused(bad):
    with pytest.raises(ModelLoadError, match="neither a local directory nor a hub id"):
        locate_model(bad)


def test_hub_id_offline_fails_clearly(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(ModelLoadError) as exc:
        locate_model("some-org/some-model", "v1", cache_dir=tmp_path)
    msg = str(exc.value)
    assert "'some-org/some-model'" in msg and "revision v1" in msg and "hub" in msg


def test_save_model_writes_a_loadable_directory(tiny_model_dir, tmp_path):
    model, tok = load_model(tiny_model_dir("opt"))
    out = tmp_path / "out"
    out.mkdir()  # a leftover of an interrupted save is replaced
    (out / "junk").write_text("x")
    save_model(model, tok, out)
    assert not (out / "junk").exists()
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    again, _ = load_model(out)
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
