"""The evaluation stages: perplexity and sample generations of the dense model and after each
stage that changed weights, on the evaluation text and a user's held-out training text.
"""

from __future__ import annotations

from service.schemas import (
    Perplexity,
    PruneSpec,
    TrainingSpec,
    partial_dir,
)
from worker.engine.data import calibration
from worker.engine.evaluation import samples
from worker.engine.evaluation.evaluate import perplexity
from worker.engine.model.model_io import (
    load_tokenizer,
)
from worker.engine.stages.state import Run, given


def eval_dense(run: Run) -> None:
    ev = given(run.spec.evaluation, "evaluation")
    run.eval_ids = calibration.eval_ids(run.tokenizer, run.sources["evaluation"])
    held = heldout_spec(run.spec)
    if held is not None:
        stage, ts = held
        held_out = calibration.heldout_ids(run.tokenizer, run.sources[stage], ts.holdout, ts.seed)
        run.heldout_ids, run.heldout_labels = held_out or (None, None)
    if run.resume is not None and run.report.perplexity is not None:
        return  # measured before the restart
    ppl, windows = perplexity(run.streamer, run.eval_ids, ev.seqlen, ev.max_windows, run.reporter)
    run.report.perplexity = Perplexity(
        dataset=ev.dataset, seqlen=ev.seqlen, windows=windows, dense=round(ppl, 4)
    )
    sample(run, "dense")
    if held is None:
        return
    ids = run.heldout_ids
    if ids is None:
        field = {"train": "training", "recover": "recovery"}[stage]
        run.warn(
            f"{field}.holdout {ts.holdout:g}: {ts.dataset} is one block (one line or one "
            "document), so nothing could be held out and there is no held-out perplexity; "
            f"give it several paragraphs or lines, or set {field}.holdout 0"
        )
        return
    seqlen = min(ev.seqlen, ids.shape[1] - 1)
    if seqlen < 8:
        run.warn(
            f"the held-out {ts.holdout:.0%} of {ts.dataset} has {ids.shape[1]} tokens, "
            "too few for a held-out perplexity"
        )
        run.heldout_ids = None
        return
    labels = run.heldout_labels
    ppl, windows = perplexity(run.streamer, ids, seqlen, ev.max_windows, run.reporter, labels)
    scored = ", the answers' tokens" if labels is not None and (labels == -100).any() else ""
    run.report.heldout = Perplexity(
        dataset=f"{ts.dataset} (held-out {ts.holdout:.0%}, seed {ts.seed}{scored})",
        seqlen=seqlen,
        windows=windows,
        dense=round(ppl, 4),
    )


def heldout_spec(spec: PruneSpec) -> tuple[str, TrainingSpec] | None:
    """The training stage whose user corpus is split into training and held-out parts."""
    for stage, ts in (("train", spec.training), ("recover", spec.recovery)):
        if ts is not None and ts.holdout > 0 and ts.dataset not in calibration.NAMED:
            return stage, ts
    return None


def eval_pruned(run: Run) -> None:
    ev = given(run.spec.evaluation, "evaluation")
    for ids, labels, result in (
        (run.eval_ids, None, run.report.perplexity),
        (run.heldout_ids, run.heldout_labels, run.report.heldout),
    ):
        if ids is None or result is None:
            continue
        ppl, _ = perplexity(run.streamer, ids, result.seqlen, ev.max_windows, run.reporter, labels)
        result.pruned = round(ppl, 4)
        result.after[run.last_changed] = round(ppl, 4)
    sample(run, run.last_changed)


def sample(run: Run, stage: str) -> None:
    """The evaluation prompts' greedy continuations after `stage` (none when no prompts)."""
    ev = given(run.spec.evaluation, "evaluation")
    if ev.prompts:  # lazy runs drop the tokenizer for the walk; its files are in the output
        tokenizer = run.tokenizer or load_tokenizer(partial_dir(run.where.output))
        texts = samples.continuations(run.streamer, tokenizer, ev, run.reporter)
        run.report.samples = samples.record(run.report.samples, ev, stage, texts)
