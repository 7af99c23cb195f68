"""Architectures of transformers' causal-LM mapping, built tiny generically, pruned through
the engine: target sparsity on every pruned matrix, everything else unchanged, reload equal.

CI runs a representative subset; `PRUNESERVE_ARCH_SWEEP=all` runs every model type with
both methods (benchmarks/architectures.py writes the same sweep to a results file).
"""

from __future__ import annotations

import logging
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.support.arch_sweep import prune_and_check
from tests.support.tiny_models import make_tiny_model
from tests.worker.engine.support import walk_model
from worker.engine.errors import UnsupportedModelError
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walker import capture

# dense Llama; tuple-returning layers (bloom: the KeyError); Conv1D (gpt2); parallel
# attention (falcon, phi); fused experts (mixtral, qwen3_moe, gpt_oss: transposed with bias);
# latent attention + shared experts (deepseek_v3); a decoder under model.decoder (opt)
FAST = [
    ("llama", "wanda"),
    ("bloom", "sparsegpt"),
    ("gpt2", "sparsegpt"),
    ("falcon", "wanda"),
    ("phi", "sparsegpt"),
    ("mixtral", "wanda"),
    ("qwen3_moe", "sparsegpt"),
    ("gpt_oss", "wanda"),
    ("deepseek_v3", "sparsegpt"),
    ("opt", "wanda"),
]


def sweep_cases():
    if os.environ.get("PRUNESERVE_ARCH_SWEEP") != "all":
        return FAST
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return [(m, meth) for m in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES for meth in ("wanda", "sparsegpt")]


@pytest.mark.parametrize(("model_type", "method"), sweep_cases())
def test_model_type_prunes_or_is_refused_clearly(tmp_path, calib_file, model_type, method):
    outcome = prune_and_check(model_type, method, tmp_path, calib_file)
    if outcome.status == "build":
        pytest.skip(f"{model_type} cannot be built tiny: {outcome.detail}")
    if (model_type, method) in FAST:
        assert outcome.status == "pass", outcome.detail
    else:  # the full sweep: supported, or refused with UnsupportedModelError saying why
        assert outcome.status in ("pass", "partial", "unsupported"), outcome.detail


def llama(tmp_path):
    return AutoModelForCausalLM.from_pretrained(make_tiny_model("llama", tmp_path)).eval()


def ids():
    return torch.randint(4, 260, (4, 32), generator=torch.Generator().manual_seed(0))


def test_an_unexpected_error_in_a_layer_is_typed_and_names_the_layer(tmp_path, caplog):
    model = llama(tmp_path / "m")

    def broken(*args, **kwargs):
        raise KeyError("rotary")

    model.model.layers[1].mlp.forward = broken
    with caplog.at_level(logging.DEBUG), pytest.raises(UnsupportedModelError) as err:
        walk_model(model, "model.layers", ids())
    assert "decoder layer 1 failed: KeyError: 'rotary'" in str(err.value)
    assert "Traceback" not in str(err.value)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "decoder layer 1" in logged[0].getMessage()  # the traceback: log only,
    assert all(r.levelno == logging.DEBUG for r in logged)  # at debug level


def test_a_layer_list_the_forward_never_calls_is_unsupported(tmp_path):
    model = llama(tmp_path / "m")
    stray = torch.nn.ModuleList([model.model.layers[0].__class__(model.config, 0)])
    with pytest.raises(UnsupportedModelError, match="decoder layer 0 was not called"):
        capture(LayerStreamer(model, stray, torch.device("cpu")), ids(), batch=4)
