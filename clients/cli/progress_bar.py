"""A rich progress bar that implements the engine's Reporter interface (local runs)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from worker.engine.progress import Reporter


class BarReporter(Reporter):
    """One bar per stage on stderr; warnings printed above it."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[msg]}"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.task = None

    def __enter__(self) -> BarReporter:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def stage(self, name: str, total: int = 0, span: tuple[float, float] = (0.0, 100.0)) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=self.bar.tasks[self.task].total or 1)
        self.task = self.bar.add_task(name, total=total or None, msg="")

    def step(self, done: int, total: int, message: str | None = None, **values: float) -> None:
        self.bar.update(self.task, completed=done, total=total, msg=message or "")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")
