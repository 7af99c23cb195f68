"""Perplexity with the standard protocol (non-overlapping windows, tokenized once)."""

from __future__ import annotations

import math

import torch
from torch import nn

from worker.engine.errors import CalibrationError
from worker.engine.progress import Reporter
from worker.engine.walk.streaming import LayerStreamer

CHUNK = 128  # logits rows materialized at a time


class _HeadReached(Exception):
    pass


def sum_nll(logits_of, hidden: torch.Tensor, labels: torch.Tensor) -> float:
    """Summed fp32 cross-entropy over the labels that are not -100, computing
    `logits_of(hidden[a:b])` a chunk of rows at a time."""
    total = 0.0
    for a in range(0, labels.shape[0], CHUNK):
        part = logits_of(hidden[a : a + CHUNK]).float()
        total += nn.functional.cross_entropy(part, labels[a : a + CHUNK], reduction="sum").item()
    return total


def mean_nll(logits_of, hidden: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean fp32 cross-entropy, computing `logits_of(hidden[a:b])` a chunk of rows at a time."""
    return sum_nll(logits_of, hidden, labels) / labels.shape[0]


def head_input(model: nn.Module, head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The hidden states (1, T, H) the output head receives; the head itself is not run."""
    box = {}

    def grab(module, args):
        box["h"] = args[0]
        raise _HeadReached

    handle = head.register_forward_pre_hook(grab)
    try:
        model(input_ids=x, use_cache=False)
    except _HeadReached:
        pass
    finally:
        handle.remove()
    return box["h"]


def plain_head(model: nn.Module, head: nn.Module | None, ids: torch.Tensor) -> bool:
    """True when logits are just head(hidden) (no softcapping or scaling after it), checked
    on a short window, so windows can skip materializing the full (T, V) logits."""
    if head is None:
        return False
    x = ids[:, : min(64, ids.shape[1])]
    full = model(input_ids=x, use_cache=False).logits
    try:
        mine = head(head_input(model, head, x))
    except (KeyError, RuntimeError):
        return False
    return mine.shape == full.shape and torch.allclose(mine, full, rtol=1e-5, atol=1e-5)


def _as_is(rows: torch.Tensor) -> torch.Tensor:
    return rows


@torch.no_grad()
def perplexity(
    streamer: LayerStreamer,
    ids: torch.Tensor,
    seqlen: int,
    max_windows: int | None,
    reporter: Reporter | None = None,
    labels: torch.Tensor | None = None,
) -> tuple[float, int]:
    """exp(mean NLL) over non-overlapping windows of `seqlen` tokens; returns (ppl, windows).

    As the reference: each window's mean loss is weighted by seqlen. With `labels` (1, N;
    -100 where a token is not scored, e.g. a chat's prompt): the mean over the scored tokens.
    """
    windows = ids.shape[1] // seqlen
    if max_windows:
        windows = min(windows, max_windows)
    if windows == 0:
        raise CalibrationError(
            f"evaluation text has {ids.shape[1]} tokens, fewer than seqlen {seqlen}"
        )
    nll, scored = 0.0, 0
    model, device = streamer.model, streamer.device
    head = model.get_output_embeddings()
    with streamer.forward():
        chunked = plain_head(model, head, ids.to(device))
        for j in range(windows):
            if reporter:
                reporter.check_cancel()
            x = ids[:, j * seqlen : (j + 1) * seqlen].to(device)  # (1, T)
            y = x if labels is None else labels[:, j * seqlen : (j + 1) * seqlen].to(device)
            if chunked:
                hidden, logits_of = head_input(model, head, x)[0, :-1], head  # (T-1, H)
            else:
                hidden = model(input_ids=x, use_cache=False).logits[0, :-1]  # (T-1, V)
                logits_of = _as_is
            if labels is None:
                nll += mean_nll(logits_of, hidden, y[0, 1:]) * seqlen
            else:
                nll += sum_nll(logits_of, hidden, y[0, 1:])
                scored += int((y[0, 1:] != -100).sum())
            if reporter:
                reporter.step(j + 1, windows, f"window {j + 1}/{windows}")
    if labels is not None:
        if scored == 0:
            raise CalibrationError("the evaluated windows hold no scored token (no answers)")
        return math.exp(nll / scored), windows
    return math.exp(nll / (windows * seqlen)), windows
