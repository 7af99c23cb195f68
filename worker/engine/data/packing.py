"""Records packed into training windows: each record's tokens followed by the tokenizer's EOS,
one stream cut into windows of `seqlen` (a long record spans windows, short ones share one),
so every token of every record is in a window. Labels are the ids where a token trains and
IGNORE where it does not (a chat's prompt, the padding of the last window)."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from service.records import Record
from worker.engine.data.chat import record_tokens
from worker.engine.errors import CalibrationError

IGNORE = -100  # the label of a token that does not train (cross_entropy's ignore_index)
CHECK_EVERY = 256  # records tokenized between cancel checks


def eos_id(tokenizer, what: str) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise CalibrationError(f"{what}: the tokenizer has no EOS token to join records with")
    return int(eos)


def stream(
    tokenizer, records: list[Record], tokenize, what: str, check: Callable[[], None]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N,), labels (N,)): the records joined, each followed by EOS (which trains when
    the record's last token does, so the model learns where an answer ends)."""
    eos = eos_id(tokenizer, what)
    ids: list[int] = []
    labels: list[int] = []
    for k, record in enumerate(records):
        if k % CHECK_EVERY == 0:
            check()
        r_ids, trains = record_tokens(tokenizer, record, tokenize)
        r_ids.append(eos)
        trains.append(bool(trains) and trains[-1])
        ids += r_ids
        labels += [t if keep else IGNORE for t, keep in zip(r_ids, trains, strict=True)]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def pack(
    ids: torch.Tensor, labels: torch.Tensor, seqlen: int, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, seqlen) windows of the stream, in order; the last one padded with `pad`, labelled
    IGNORE."""
    k = -(-ids.shape[0] // seqlen)
    fill = k * seqlen - ids.shape[0]
    ids = torch.cat([ids, ids.new_full((fill,), pad)])
    labels = torch.cat([labels, labels.new_full((fill,), IGNORE)])
    return ids.view(k, seqlen), labels.view(k, seqlen)


def draw(windows: torch.Tensor, labels: torch.Tensor, n: int, seed: int):
    """n windows: the K packed windows in a shuffled order (by `seed`), a new order each pass
    over them (an epoch) when n > K."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < n:
        epoch = list(range(windows.shape[0]))
        rng.shuffle(epoch)
        order += epoch
    index = torch.tensor(order[:n])
    return windows[index], labels[index]


def record_windows(
    tokenizer,
    records: list[Record],
    n: int,
    seqlen: int,
    seed: int,
    tokenize,
    what: str,
    check: Callable[[], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, seqlen) training windows and their labels from `records`."""
    ids, labels = stream(tokenizer, records, tokenize, what, check)
    if not (labels != IGNORE).any():
        raise CalibrationError(f"{what}: no token to train on (no text and no answers)")
    windows, wlabels = pack(ids, labels, seqlen, eos_id(tokenizer, what))
    return draw(windows, wlabels, n, seed)
