"""Calibration windows and evaluation token ids, drawn as the reference loaders do, so results
compare token for token (datasets.py finds and reads the text).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from worker.engine.data.datasets import NAMED, calibration_text, read_rows
from worker.engine.data.datasets import resolve_dataset as resolve_dataset  # run.py's entry point
from worker.engine.data.packing import record_windows, stream
from worker.engine.data.records import read_records
from worker.engine.errors import CalibrationError

MAX_DRAWS_PER_SAMPLE = 100  # documents tried per sample before giving up (all too short)


@dataclass(frozen=True)
class Names:
    """What an error calls the text and its window length (spec fields and CLI flags)."""

    text: str = "calibration text"
    seqlen: str = "seqlen"


def training_names(field: str) -> Names:
    """The names of the `training` or `recovery` stage's data."""
    return Names(
        f"{field}.dataset (--train-data): the training text", f"{field}.seqlen (--train-seqlen)"
    )


def _no_check() -> None:
    """Called once per window drawn; a run passes its reporter's check_cancel."""


def tokenize(tokenizer, text: str) -> torch.Tensor:
    """Token ids (1, N) of the whole text, tokenized once: by a fast tokenizer's own encoder
    when it has one (the ids `tokenizer(text)` gives, without the Python lists of ids and
    masks that call builds: ~60 MB less at the peak for a WikiText split)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        if backend.truncation is not None or backend.padding is not None:
            backend.no_truncation()  # as tokenizer(text) sets them: the whole text, unpadded
            backend.no_padding()
        return torch.tensor([backend.encode(text, add_special_tokens=True).ids])
    old = getattr(tokenizer, "model_max_length", None)
    tokenizer.model_max_length = int(1e30)  # silence the 'sequence too long' warning
    try:
        return tokenizer(text, return_tensors="pt").input_ids
    finally:
        tokenizer.model_max_length = old


Draw = Callable[[random.Random], torch.Tensor]  # one window (seqlen,) from the rng's next draws


class Windows:
    """The (n, seqlen) windows of one seed, drawn as they are asked for (`rows`), equal row
    for row to drawing all n at once: training holds a step's rows, not steps x batch of them.
    `check()` runs once per window drawn (also those skipped to reach a resumed step)."""

    def __init__(self, draw: Draw, seed: int, n: int, check: Callable[[], None] = _no_check):
        self._draw, self._seed, self._n, self._check = draw, seed, n, check
        self._rng, self._next = random.Random(seed), 0

    def __len__(self) -> int:
        return self._n

    def rows(self, start: int, count: int) -> torch.Tensor:
        """Windows [start, start + count), (count, seqlen)."""
        if start < self._next:  # asked again from an earlier row: draw from the seed anew
            self._rng, self._next = random.Random(self._seed), 0
        while self._next < start:
            self._check()
            self._draw(self._rng)
            self._next += 1
        out = []
        for _ in range(min(count, self._n - start)):
            self._check()
            out.append(self._draw(self._rng))
            self._next += 1
        return torch.stack(out)

    def labels(self, start: int, count: int) -> None:
        """Every token of a text window trains."""
        return None


class Packed:
    """Windows packed from JSON-lines records, with their labels (-100: no loss there, e.g. a
    chat's prompt), built at once: a user's file is bounded by the upload limit."""

    def __init__(self, ids: torch.Tensor, labels: torch.Tensor | None):
        self._ids, self._labels = ids, labels

    def __len__(self) -> int:
        return self._ids.shape[0]

    def rows(self, start: int, count: int) -> torch.Tensor:
        return self._ids[start : start + count]

    def labels(self, start: int, count: int) -> torch.Tensor | None:
        return None if self._labels is None else self._labels[start : start + count]


def stream_draw(ids: torch.Tensor, seqlen: int, names: Names = Names()) -> Draw:
    """Windows of one token stream ids (1, N): i = randint(0, N - seqlen - 1)."""
    total = ids.shape[1]
    if total - seqlen - 1 < 0:
        raise CalibrationError(
            f"{names.text} has {total} tokens; {names.seqlen} {seqlen} needs at least {seqlen + 1}"
        )

    def draw(rng: random.Random) -> torch.Tensor:
        i = rng.randint(0, total - seqlen - 1)
        return ids[0, i : i + seqlen]

    return draw


def document_draw(tokenizer, rows: list[str], seqlen: int, names: Names = Names()) -> Draw:
    """Windows as the reference C4 loader draws them: documents until one is longer than
    seqlen tokens, then a random window inside it."""

    def draw(rng: random.Random) -> torch.Tensor:
        for _ in range(MAX_DRAWS_PER_SAMPLE):
            ids = tokenize(tokenizer, rows[rng.randint(0, len(rows) - 1)])
            if ids.shape[1] > seqlen:
                break
        else:
            raise CalibrationError(
                f"{names.text}: no document of more than {names.seqlen} {seqlen} tokens found "
                f"in {MAX_DRAWS_PER_SAMPLE} draws; use a smaller seqlen or longer documents"
            )
        i = rng.randint(0, ids.shape[1] - seqlen - 1)
        return ids[0, i : i + seqlen]

    return draw


def calibration_windows(
    ids: torch.Tensor, nsamples: int, seqlen: int, seed: int, names: Names = Names()
) -> torch.Tensor:
    """(nsamples, seqlen) windows: rng = Random(seed); i = randint(0, N - seqlen - 1)."""
    return Windows(stream_draw(ids, seqlen, names), seed, nsamples).rows(0, nsamples)


def document_windows(
    tokenizer,
    rows: list[str],
    nsamples: int,
    seqlen: int,
    seed: int,
    names: Names = Names(),
    check: Callable[[], None] = _no_check,
) -> torch.Tensor:
    """(nsamples, seqlen) windows of documents (document_draw)."""
    draw = document_draw(tokenizer, rows, seqlen, names)
    return Windows(draw, seed, nsamples, check).rows(0, nsamples)


def source_draw(tokenizer, name: str, source: Path | list[str], seqlen: int, names: Names) -> Draw:
    """How calibration draws from `source`: documents for C4 and JSON lines; otherwise one long
    text (a .txt read whole, or the hub's WikiText rows joined back into that same text, so
    both give one token stream)."""
    by_document = name == "c4" or (isinstance(source, Path) and not source.name.endswith(".txt"))
    if by_document:
        rows = [r for r in read_rows(source) if r.strip()]
        if not rows:
            raise CalibrationError(f"{names.text} {name!r} has no text")
        return document_draw(tokenizer, rows, seqlen, names)
    return stream_draw(tokenize(tokenizer, calibration_text(source)), seqlen, names)


def calibration_ids(
    tokenizer,
    name: str,
    source: Path | list[str],
    nsamples: int,
    seqlen: int,
    seed: int,
    names: Names = Names(),
    check: Callable[[], None] = _no_check,
) -> torch.Tensor:
    """Calibration windows (nsamples, seqlen) as the reference loaders draw them."""
    draw = source_draw(tokenizer, name, source, seqlen, names)
    return Windows(draw, seed, nsamples, check).rows(0, nsamples)


def eval_ids(tokenizer, source: Path | list[str]) -> torch.Tensor:
    """Evaluation token ids (1, N): rows joined with '\\n\\n', tokenized once."""
    return tokenize(tokenizer, "\n\n".join(read_rows(source)))


def _blocks(source: Path | list[str]) -> tuple[list, bool]:
    """The units a user's corpus is split in, and whether they are records (JSON lines: text,
    chats, prompts and completions) or parts of one text (paragraphs of a .txt, or its lines
    when it has few paragraphs)."""
    if isinstance(source, Path) and source.name.endswith(".txt"):
        text = calibration_text(source)
        paras = [p for p in text.split("\n\n") if p.strip()]
        return (
            paras if len(paras) >= 10 else [ln for ln in text.splitlines() if ln.strip()]
        ), False
    if isinstance(source, Path):
        return [r for r in read_records(source) if r.text is None or r.text.strip()], True
    return [r for r in read_rows(source) if r.strip()], True


def split_holdout(source: Path | list[str], share: float, seed: int):
    """(training blocks, held-out blocks, documents?): a deterministic split of a user's corpus
    by `seed`, `share` of its blocks held out (at least one when share > 0 and there are two)."""
    blocks, documents = _blocks(source)
    n_held = min(len(blocks) - 1, max(1, round(share * len(blocks)))) if share > 0 else 0
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_held])
    train = [b for i, b in enumerate(blocks) if i not in held]
    return train, [b for i, b in enumerate(blocks) if i in held], documents


def training_ids(*args, **kwargs) -> torch.Tensor:
    """All the windows of `training_windows(*args, **kwargs)` at once, without their labels."""
    windows = training_windows(*args, **kwargs)
    return windows.rows(0, len(windows))


def training_windows(
    tokenizer,
    name: str,
    source,
    n: int,
    seqlen: int,
    seed: int,
    holdout: float,
    field: str = "training",
    check: Callable[[], None] = _no_check,
) -> Windows | Packed:
    """The n training windows of the `field` stage ("training" or "recovery"): from the
    training part of a user's corpus split by `holdout` (text drawn as needed; JSON-lines
    records packed, with labels, see data/packing.py), or, for named datasets (never split:
    they have their own evaluation split), as calibration. The first window is drawn here, so
    a text too short fails before any work."""
    names = training_names(field)
    user_records = isinstance(source, Path) and not source.name.endswith(".txt")
    if name in NAMED or (holdout == 0 and not user_records):
        draw = source_draw(tokenizer, name, source, seqlen, names)
    else:
        train, _, documents = split_holdout(source, holdout, seed)
        if documents:
            tok = functools.partial(tokenize, tokenizer)
            ids, labels = record_windows(tokenizer, train, n, seqlen, seed, tok, names.text, check)
            return Packed(ids, labels)
        draw = stream_draw(tokenize(tokenizer, "\n\n".join(train)), seqlen, names)
    draw(random.Random(seed))  # the first window: a text too short fails here
    return Windows(draw, seed, n, check)


def heldout_ids(tokenizer, source, holdout: float, seed: int):
    """(token ids (1, N), labels (1, N) or None) of the held-out part: text joined as
    evaluation text is; records joined as training packs them, labels marking the tokens
    that train (a chat's answers). None when the corpus is one block (one line, or one
    document), so nothing can be held out."""
    _, held, documents = split_holdout(source, holdout, seed)
    if not held:
        return None
    if documents:
        tok = functools.partial(tokenize, tokenizer)
        ids, labels = stream(tokenizer, held, tok, "held-out records", _no_check)
        return ids[None], labels[None]
    return tokenize(tokenizer, "\n\n".join(held)), None
