"""Sample generations: greedy continuations of the evaluation prompts, so a report shows what
the model says after each stage and not only its perplexity."""

from __future__ import annotations

import torch

from service.schemas import EvalSpec, Samples
from worker.engine.progress import Reporter
from worker.engine.walk.streaming import LayerStreamer


@torch.no_grad()
def greedy(model, ids: torch.Tensor, tokens: int, eos: int | None) -> torch.Tensor:
    """`tokens` argmax steps after `ids` (1, T), stopping at `eos`; returns the new ids (1, K).

    No KV cache: the lazy streamer runs one layer at a time, and prompts are short and bounded.
    """
    out = ids
    for _ in range(tokens):
        logits = model(input_ids=out, use_cache=False).logits[0, -1]  # (V,)
        nxt = logits.float().argmax().view(1, 1)
        out = torch.cat([out, nxt.to(out.device)], dim=1)
        if eos is not None and int(nxt) == eos:
            break
    return out[:, ids.shape[1] :]


def continuations(
    streamer: LayerStreamer, tokenizer, ev: EvalSpec, reporter: Reporter | None = None
) -> list[str]:
    """One greedy continuation of `ev.sample_tokens` tokens per prompt of `ev.prompts`."""
    model, device = streamer.model, streamer.device
    texts = []
    with streamer.forward():
        for prompt in ev.prompts:
            if reporter:
                reporter.check_cancel()
            ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)  # (1, T)
            new = greedy(model, ids, ev.sample_tokens, tokenizer.eos_token_id)
            texts.append(tokenizer.decode(new[0], skip_special_tokens=True))
    return texts


def record(samples: Samples | None, ev: EvalSpec, stage: str, texts: list[str]) -> Samples:
    """`samples` (or new ones for `ev`) with `texts` as the continuations after `stage`."""
    samples = samples or Samples(prompts=list(ev.prompts), tokens=ev.sample_tokens)
    samples.after[stage] = texts
    return samples
