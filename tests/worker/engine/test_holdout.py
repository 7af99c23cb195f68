"""A user's training corpus is split by the seed into training and held-out parts: the split
is deterministic and disjoint, training windows come only from the training part, and the
report gives the held-out perplexity dense and pruned beside the evaluation dataset's."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from service.schemas import EvalSpec, PruneSpec
from worker.engine.data.calibration import split_holdout, tokenize, training_windows
from worker.engine.run import run


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """40 paragraphs, each a distinct letter repeated, so any window shows where it came from."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
    path = tmp_path_factory.mktemp("domain") / "domain.txt"
    path.write_text("\n\n".join((ch * 5 + " ") * 30 for ch in letters))
    return path


def test_the_split_is_deterministic_disjoint_and_holds_out_the_share(corpus):
    train, held, documents = split_holdout(corpus, 0.1, seed=3)
    assert not documents and len(held) == 4 and len(train) == 36
    assert not set(train) & set(held)
    assert split_holdout(corpus, 0.1, seed=3)[1] == held
    assert split_holdout(corpus, 0.1, seed=4)[1] != held
    assert split_holdout(corpus, 0.0, seed=3)[1] == []


def test_jsonl_documents_split_as_documents(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(20)))
    train, held, documents = split_holdout(path, 0.25, seed=0)
    assert documents and len(held) == 5 and len(train) == 15


def test_training_windows_never_contain_held_out_text(corpus, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    _, held, _ = split_holdout(corpus, 0.1, seed=0)
    held_letters = {p[0] for p in held}
    ids = training_windows(tok, str(corpus), corpus, 64, 24, 0, 0.1).rows(0, 64)
    assert ids.shape == (64, 24)
    seen = set(tok.decode(ids.reshape(-1)).replace(" ", "").replace("\n", ""))
    assert seen and not seen & held_letters
    named = training_windows(tok, "wikitext2", corpus, 4, 24, 0, 0.1).rows(0, 4)  # never split
    whole = tokenize(tok, corpus.read_text())
    assert named.shape == (4, 24) and whole.shape[1] > 24


def test_report_gives_held_out_perplexity_dense_and_pruned(corpus, tiny_model_dir, tmp_path):
    ts = {"dataset": str(corpus), "steps": 4, "seqlen": 32, "batch_size": 2, "lr": 3e-3}
    ev = EvalSpec(dataset=str(corpus), seqlen=32, max_windows=4)
    model = str(tiny_model_dir("llama"))
    spec = PruneSpec(
        model=model, method="gmp", sparsity=0.5, device="cpu", training=ts, evaluation=ev
    )
    report = run(spec, tmp_path / "out")
    held = report.heldout
    assert held is not None and "held-out 10%, seed 0" in held.dataset
    assert held.dense > 0 and held.pruned > 0 and held.pruned != held.dense
    assert set(held.after) == {"train"} and report.perplexity.pruned > 0
    assert "90% of its blocks" in report.training[0].split
    named = PruneSpec(
        model=model,
        method="gmp",
        sparsity=0.5,
        device="cpu",
        training={**ts, "holdout": 0.0},
        evaluation=ev,
    )
    assert run(named, tmp_path / "out2").heldout is None


def test_a_one_block_corpus_is_a_warning_that_names_the_field(tiny_model_dir, tmp_path):
    one_line = tmp_path / "one.txt"
    one_line.write_text("a single line of domain text with no breaks " * 40)
    ev = EvalSpec(dataset=str(one_line), seqlen=32, max_windows=2)
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")),
        method="gmp",
        sparsity=0.5,
        device="cpu",
        evaluation=ev,
        training={"dataset": str(one_line), "steps": 2, "seqlen": 32, "batch_size": 2},
    )
    report = run(spec, tmp_path / "out")
    assert report.heldout is None and report.perplexity.pruned > 0
    [warning] = [w for w in report.warnings if "held" in w]
    assert warning.startswith("training.holdout 0.1: ") and "one block" in warning, warning
    assert "set training.holdout 0" in warning


@pytest.mark.parametrize("holdout", [0.0, 0.1])
def test_training_windows_drawn_as_needed_equal_those_drawn_at_once(
    corpus, tiny_model_dir, holdout
):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    whole = training_windows(tok, str(corpus), corpus, 12, 24, 5, holdout).rows(0, 12)
    checks = []
    windows = training_windows(
        tok, str(corpus), corpus, 12, 24, 5, holdout, check=lambda: checks.append(1)
    )
    assert len(windows) == 12 and not checks  # nothing drawn ahead of need
    assert torch.equal(windows.rows(6, 3), whole[6:9])  # a resumed run skips to its step
    assert len(checks) == 9  # cancel is checked for every window drawn or skipped
    assert torch.equal(windows.rows(9, 3), whole[9:])
    assert torch.equal(windows.rows(0, 2), whole[:2])  # asked again: drawn anew from the seed
