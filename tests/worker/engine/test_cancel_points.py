"""Cancel reaches every stage, not only the walk and the training loop: a cancel requested as a
stage starts stops it before its first unit of work (an evaluation window, the checkpoint
write, the training windows), and run() publishes nothing."""

from __future__ import annotations

import json

import pytest

from service.schemas import (
    CalibrationSpec,
    EvalSpec,
    PruneSpec,
    TrainingSpec,
    partial_dir,
    resume_dir,
)
from worker.engine.data import calibration
from worker.engine.errors import Cancelled
from worker.engine.progress import Reporter
from worker.engine.run import run


class CancelAt(Reporter):
    """The user cancels as stage `at` starts: from then on every check raises; `after` is what
    the run still reported."""

    def __init__(self, at: str):
        self.at, self.requested, self.after = at, False, []

    def stage(self, name, total=0, span=(0.0, 100.0)):
        if self.requested:
            self.after.append(f"stage {name}")
        self.requested = self.requested or name == self.at

    def step(self, done, total, message=None, **values):
        if self.requested:
            self.after.append(message)

    def check_cancel(self):
        if self.requested:
            raise Cancelled("cancelled on request")


def spec(model_dir, calib_file, **kw) -> PruneSpec:
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    ev = EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=4)
    return PruneSpec(
        model=str(model_dir),
        method="wanda",
        sparsity="2:4",
        calibration=cal,
        evaluation=ev,
        device="cpu",
        **kw,
    )


@pytest.mark.parametrize("stage", ["eval_dense", "eval_pruned", "save"])
def test_a_cancel_as_a_stage_starts_stops_it_before_any_work(
    tiny_model_dir, calib_file, tmp_path, stage
):
    reporter, out = CancelAt(stage), tmp_path / "out"
    with pytest.raises(Cancelled):
        run(spec(tiny_model_dir("llama"), calib_file), out, reporter=reporter)
    assert reporter.after == []  # no window evaluated, no later stage begun
    assert not out.exists() and not partial_dir(out).exists()  # the weights were never written


def test_a_cancel_while_training_windows_are_built_stops_before_training(
    tiny_model_dir, calib_file, tmp_path
):
    rec = TrainingSpec(dataset=str(calib_file), steps=4, seqlen=32, batch_size=2)
    reporter, out = CancelAt("recover"), tmp_path / "out"
    with pytest.raises(Cancelled):
        run(spec(tiny_model_dir("llama"), calib_file, recovery=rec), out, reporter=reporter)
    assert reporter.after == []
    assert not (resume_dir(out) / "recover.json").exists()  # the loop never began


def test_training_windows_from_records_check_for_cancel_as_records_are_tokenized(
    tiny_model_dir, tmp_path
):
    from transformers import AutoTokenizer

    from worker.engine.data.packing import CHECK_EVERY

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": "word " * 4}) + "\n" for _ in range(600)))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    checks = []
    ids = calibration.training_ids(
        tok, str(docs), docs, 6, 16, 0, 0.1, "recovery", lambda: checks.append(1)
    )
    assert ids.shape == (6, 16) and len(checks) == -(-540 // CHECK_EVERY)
