"""Perplexity with the standard protocol: non-overlapping windows of the text tokenized once."""

from __future__ import annotations

import math

import pytest
import torch

from worker.engine.errors import CalibrationError
from worker.engine.evaluation.evaluate import perplexity, plain_head
from worker.engine.model.model_io import decoder_layers, load_model
from worker.engine.walk.streaming import LayerStreamer


# llama: logits = lm_head(hidden), evaluated a chunk at a time; gemma2 soft-caps its logits
# after the head, so the full logits path must be taken.
@pytest.mark.parametrize(("arch", "plain"), [("llama", True), ("gemma2", False)])
def test_perplexity_equals_the_mean_window_loss(tiny_model_dir, arch, plain):
    model, _ = load_model(tiny_model_dir(arch))
    if arch == "gemma2":  # random-init logits are tiny; a small cap makes tanh clearly bend them
        model.config.final_logit_softcapping = 0.05
    _, layers = decoder_layers(model)
    ids = torch.randint(4, 260, (1, 32 * 4 + 7), generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    windows = [ids[:, j * 32 : (j + 1) * 32] for j in range(4)]
    with torch.no_grad():
        losses = [model(input_ids=x, labels=x).loss.item() for x in windows]
    assert plain_head(model, model.get_output_embeddings(), ids) is plain
    ppl, windows = perplexity(LayerStreamer(model, layers, cpu), ids, 32, None)
    assert windows == 4  # the 7 leftover tokens are dropped
    assert ppl == pytest.approx(math.exp(sum(losses) / 4), rel=1e-5)
    ppl2, windows2 = perplexity(LayerStreamer(model, layers, cpu), ids, 32, 2)
    assert windows2 == 2 and ppl2 == pytest.approx(math.exp(sum(losses[:2]) / 2), rel=1e-5)


def test_text_shorter_than_one_window(tiny_model_dir):
    model, _ = load_model(tiny_model_dir("llama"))
    _, layers = decoder_layers(model)
    with pytest.raises(CalibrationError, match="fewer than seqlen 32"):
        streamer = LayerStreamer(model, layers, torch.device("cpu"))
        perplexity(streamer, torch.ones(1, 31, dtype=torch.long), 32, None)
