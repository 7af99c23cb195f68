"""The small recorder interface the engine reports through (CLI bar, Celery job record)."""

from __future__ import annotations


class Reporter:
    """Does nothing; subclasses show or store progress and may cancel."""

    def stage(self, name: str, total: int = 0, span: tuple[float, float] = (0.0, 100.0)) -> None:
        """A new stage starts (load, calibrate, eval_dense, prune, eval_pruned, save); it has
        `total` steps and covers `span` = (start, end) of the job's overall percent."""

    def step(self, done: int, total: int, message: str | None = None, **values: float) -> None:
        """`done` of `total` units of the current stage are finished (layers for prune,
        windows for evaluation, steps for training, with `loss=` among `values`)."""

    def warn(self, message: str) -> None:
        """Something the user should know (raised damping, skipped module)."""

    def check_cancel(self) -> None:
        """Raise engine.errors.Cancelled to stop here: every stage calls it at least every few
        seconds of work (per layer, evaluation window, training step or window drawn, and
        before each stage and each write of the checkpoint); the Celery job's may also raise
        Interrupted when Redis stays unreachable."""
