"""The calibrate stage: the calibration windows the walk's statistics come from."""

from __future__ import annotations

from worker.engine.data import calibration
from worker.engine.stages.state import Run


def calibrate(run: Run) -> None:
    cal = run.spec.calibration
    run.ids = calibration.calibration_ids(
        run.tokenizer,
        cal.dataset,
        run.sources["calibration"],
        cal.nsamples,
        cal.seqlen,
        cal.seed,
        check=run.reporter.check_cancel,
    )
