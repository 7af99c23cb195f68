"""Live progress of a remote job (rich bar on a terminal, one line per change otherwise)
and the report summary table printed when a job (or a local prune) ends.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.schemas import JobPublic, ReportSummary


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -:--"
    seconds = int(round(seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


def progress_line(job: JobPublic) -> str:
    """'running  prune  layer 3/30  10.0%  ETA 0:42' — also the non-terminal output."""
    p = job.progress
    if job.state.terminal:
        return f"{job.state.value:<9} {'':<25} {p.percent:5.1f}%"
    layers = f"layer {p.layer}/{p.n_layers}" if p.n_layers else "layer -/-"
    return (
        f"{job.state.value:<9} {p.stage:<12} {layers:<12} {p.percent:5.1f}%  {format_eta(p.eta_s)}"
    )


class JobWatcher:
    """Feed it every polled job (an `on_progress` callback for PruneClient.wait)."""

    def __init__(self, console: Console):
        self.console = console
        self.last_line = ""
        self.bar: Progress | None = None
        self.task = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.fields[stage]:<12}"),
                BarColumn(),
                TextColumn("{task.fields[layers]:<12}"),
                TextColumn("{task.percentage:>5.1f}%"),
                TextColumn("{task.fields[eta]}"),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> JobWatcher:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("job", total=100, stage="queued", layers="", eta="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, job: JobPublic) -> None:
        p = job.progress
        if self.bar is not None and self.task is not None:
            stage = p.stage if job.state.value == "running" else job.state.value
            self.bar.update(
                self.task,
                completed=100.0 if job.state.value == "succeeded" else p.percent,
                stage=stage,
                layers=f"layer {p.layer}/{p.n_layers}" if p.n_layers else "",
                eta=format_eta(p.eta_s) if job.state.value == "running" else "",
            )
            return
        line = progress_line(job)
        key = line.rsplit("ETA", 1)[0]  # ETA alone changing is not worth a line
        if key != self.last_line:
            self.console.print(line, highlight=False)
            self.last_line = key


def summary_table(summary: ReportSummary, title: str | None = None) -> Table:
    """Sparsity, perplexity dense -> pruned, time, memory, warnings: what a user wants to see
    first, one row each (`--json` gives machines the whole report instead)."""
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    nm = "" if summary.nm_ok is None else f" (N:M pattern {'ok' if summary.nm_ok else 'BROKEN'})"
    table.add_row("sparsity", f"{summary.sparsity:.2%}{nm}")
    if summary.perplexity_dense is not None or summary.perplexity_pruned is not None:
        table.add_row(
            "perplexity",
            f"{_num(summary.perplexity_dense)} (dense) -> {_num(summary.perplexity_pruned)} "
            "(pruned)",
        )
    for task, acc in summary.tasks.items():
        table.add_row(task, f"{_num(acc['dense'])} (dense) -> {_num(acc['pruned'])} (pruned) acc")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.stages_s.items())
    table.add_row("time", f"{summary.total_s:.1f}s" + (f" ({stages})" if stages else ""))
    table.add_row("peak RSS", f"{summary.peak_rss_mb:.0f} MB")
    if summary.peak_cuda_mb is not None:
        table.add_row("peak CUDA", f"{summary.peak_cuda_mb:.0f} MB")
    for w in summary.warnings:
        table.add_row("warning", w, style="yellow")
    return table


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
