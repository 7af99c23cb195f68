"""Block-local training (block-wise reconstruction, EBFT): a block's trainable parameters are
fitted so that its output on stored inputs matches a stored target, with the training
engine's optimizer, learning-rate schedule and gradient clipping.

The objective is the normalised mean squared error

    L = sum_b ||f(X_b) - Y_b||^2 / ||Y||^2        (Y: the target over all windows)

so a loss of 1 is an output as far from the target as zero would be. `train()` in loop.py
runs a whole causal LM on token ids with a logits objective; here the data are one block's
input and target activations, so the step differs while its pieces are shared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from worker.engine.train.loop import GRAD_CLIP, LoopConfig, lr_at

Span = tuple[int, int]  # rows [s, e) of the activation buffers
Forward = Callable[[int, int], torch.Tensor]  # rows [s, e) -> the block's output (B, T, H)


@dataclass(frozen=True)
class BlockConfig:
    epochs: int
    lr: float
    spans_per_step: int  # forward spans accumulated into one optimizer step
    weight_decay: float
    seed: int  # with the block's index: the order of the spans in each epoch


def optimizer(params: list[nn.Parameter], cfg: LoopConfig) -> torch.optim.Optimizer:
    """The training engine's optimizer (as loop.train builds it)."""
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def power(target: torch.Tensor, spans: list[Span]) -> float:
    """||Y||^2 over all rows, in fp32 (the loss's normaliser)."""
    return sum(float(target[s:e].float().square().sum()) for s, e in spans)


@torch.no_grad()
def relative_error(
    forward: Forward, target: torch.Tensor, spans: list[Span], norm: float, out=None
) -> float:
    """L at the current weights over all spans; each span's output is then written to
    `out[s:e]` when given (it may be the input buffer: a span is read before it is written)."""
    err = 0.0
    for s, e in spans:
        y = forward(s, e)
        err += float((y.float() - target[s:e].float()).square().sum())
        if out is not None:
            out[s:e] = y
    return err / max(norm, 1e-30)


def epoch_order(n_spans: int, seed: int, block: int, epoch: int) -> list[int]:
    """A permutation of the spans fixed by (seed, block, epoch), so a block redone after a
    restart trains on the same order."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + block * 1_009 + epoch)
    return torch.randperm(n_spans, generator=g).tolist()


def train_block(
    forward: Forward,
    params: list[nn.Parameter],
    target: torch.Tensor,
    spans: list[Span],
    cfg: BlockConfig,
    block: int,
    on_epoch: Callable[[int, float], None],
    check: Callable[[], None],
) -> list[float]:
    """Fit `params` for cfg.epochs passes over `spans`; `check()` runs before every step
    (cancel), `on_epoch(epoch, mean loss)` after every epoch. Returns the epoch losses."""
    per_epoch = math.ceil(len(spans) / cfg.spans_per_step)
    loop = LoopConfig(
        steps=cfg.epochs * per_epoch,
        batch_size=cfg.spans_per_step,
        micro_batch=1,
        lr=cfg.lr,
        warmup_steps=0,  # EBFT: linear decay from the peak, no warm-up
        weight_decay=cfg.weight_decay,
        checkpoint_every=0,
    )
    opt = optimizer(params, loop)
    norm = max(power(target, spans), 1e-30)
    rows = sum(e - s for s, e in spans)
    losses = []
    for epoch in range(cfg.epochs):
        order = epoch_order(len(spans), cfg.seed, block, epoch)
        total = 0.0
        for k in range(per_epoch):
            check()
            step = epoch * per_epoch + k
            for g in opt.param_groups:
                g["lr"] = lr_at(step, loop)
            per = cfg.spans_per_step
            chosen = [spans[j] for j in order[k * per : (k + 1) * per]]
            share = sum(e - s for s, e in chosen) / rows  # this step's part of the whole
            for s, e in chosen:
                y = forward(s, e)
                loss = (y.float() - target[s:e].float()).square().sum() / norm
                (loss / share).backward()  # the step's loss on the whole's scale
                total += float(loss.detach())
                del y, loss
            nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(round(total, 8))
        on_epoch(epoch + 1, total)
    return losses
