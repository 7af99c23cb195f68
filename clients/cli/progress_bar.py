"""The one progress display of a local run: the engine's Reporter drawn with rich on stderr,
while the libraries' own progress bars (transformers, the hub, tqdm) stay silent.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from worker.engine.progress import Reporter


def silence_other_bars() -> None:
    """Switch off tqdm (read when tqdm is imported: call before transformers is) and the hub's
    bars (GGUF conversion, downloads) for this process."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _quiet_transformers() -> Callable[[], None]:
    """Silence transformers' bars (loading weights, writing shards) now; returns the undo."""
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        return lambda: None
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar


class _Whichever(ProgressColumn):
    """`counted` for a stage counted in steps (layers, windows), `uncounted` for the others."""

    def __init__(self, counted: ProgressColumn, uncounted: ProgressColumn):
        super().__init__()
        self.counted, self.uncounted = counted, uncounted

    def render(self, task: Task) -> RenderableType:
        return (self.uncounted if task.total is None else self.counted).render(task)


class _Spinner(SpinnerColumn):
    """Spins while the stage runs; then a check mark, or a cross if it failed."""

    ENDED = {"done": Text("✓", style="green"), "failed": Text("✗", style="red")}

    def render(self, task: Task) -> RenderableType:
        return self.ENDED.get(task.fields.get("ended")) or super().render(task)


class _Blank(ProgressColumn):
    def render(self, task: Task) -> RenderableType:
        return Text("")


class BarReporter(Reporter):
    """One line per stage: a bar with percent and ETA when the stage counts steps, a spinner
    with the elapsed time when it does not (load, calibrate, save)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description:<12}"),
            _Whichever(BarColumn(), _Spinner()),
            _Whichever(TextColumn("{task.percentage:>3.0f}%"), _Blank()),
            TextColumn("{task.fields[msg]}"),
            _Whichever(TimeRemainingColumn(), TimeElapsedColumn()),
            console=self.console,
        )
        self.task = None
        self._undo = lambda: None

    def __enter__(self) -> BarReporter:
        self._undo = _quiet_transformers()
        self.bar.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self._finish(failed=exc_type is not None)
        self.bar.stop()
        self._undo()

    def stage(self, name: str, total: int = 0, span: tuple[float, float] = (0.0, 100.0)) -> None:
        """A line per stage; `span` (its share of the job's percent) matters to job records,
        not to a display that shows each stage on its own line."""
        self._finish()
        self.task = self.bar.add_task(name, total=total or None, msg="", ended=None)

    def step(self, done: int, total: int, message: str | None = None, **values: float) -> None:
        self.bar.update(self.task, completed=done, total=total, msg=message or "")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def _finish(self, failed: bool = False) -> None:
        """End the current stage: done (✓, or a full bar), or failed (✗, the bar where it was)."""
        if self.task is None:
            return
        task = self.bar.tasks[self.task]
        if failed or task.total is None:
            msg = f"{task.fields['msg']} [red]failed[/]".lstrip() if failed else task.fields["msg"]
            self.bar.update(self.task, ended="failed" if failed else "done", msg=msg)
            self.bar.stop_task(self.task)  # freezes its elapsed time
        else:
            self.bar.update(self.task, completed=task.total)
        self.task = None
