"""A causal LM split at its LM head, so the loss can take the logits a chunk of tokens at a
time (objective.py): the decoder's last hidden states, and the function from them to logits
(the head, then the final soft-cap or logit scale a config may have)."""

from __future__ import annotations

import torch

from worker.engine.model.hf_types import HFModel
from worker.engine.train.objective import Head


def last_hidden(model: HFModel, ids: torch.Tensor) -> torch.Tensor:
    """The hidden states (B, T, H) the LM head reads: the base model's output."""
    return model.base_model(input_ids=ids, use_cache=False).last_hidden_state


def head_of(model: HFModel) -> Head:
    head = model.get_output_embeddings()
    cfg = model.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    scale = getattr(cfg, "logit_scale", None)

    def logits(h: torch.Tensor) -> torch.Tensor:
        out = head(h)
        if scale is not None:
            out = out * scale
        if cap is not None:
            out = torch.tanh(out / cap) * cap
        return out

    return logits


def vocab_of(model: HFModel) -> int:
    return model.get_output_embeddings().weight.shape[0]
