"""The WikiText-2 files the e2e tests read: the first bytes of the real ones when a
../shared/data sits beside the checkout, else a stand-in of English prose in paragraphs (the
standard library's docstrings, as the quickstart uploads), so a fresh clone runs every test.
"""

from __future__ import annotations

from pathlib import Path

from scripts.sample_text import paragraphs

SPLITS = ("valid", "test")


def write_wikitext(out: Path, shared: Path, size: int) -> None:
    """`out`/{valid,test}.txt of about `size` bytes each, from `shared` when it has them."""
    out.mkdir(parents=True, exist_ok=True)
    if all((shared / f"{split}.txt").is_file() for split in SPLITS):
        for split in SPLITS:
            with (shared / f"{split}.txt").open("rb") as f:
                (out / f"{split}.txt").write_bytes(f.read(size))
        return
    for split, text in zip(SPLITS, stand_in(size), strict=True):
        (out / f"{split}.txt").write_text(text, encoding="utf-8")


def stand_in(size: int) -> tuple[str, str]:
    """Two different texts of at least `size` bytes, whole paragraphs joined by blank lines."""
    paras, texts = iter(paragraphs()), []
    for _ in SPLITS:
        taken: list[str] = []
        while sum(len(p.encode()) + 2 for p in taken) < size:
            taken.append(next(paras))
        texts.append("\n\n".join(taken) + "\n")
    return texts[0], texts[1]
