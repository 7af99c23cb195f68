"""The terminal summary of a finished run: the summary table, every stage's perplexity
(dense, after pruning, after each training stage, held-out) and the sample generations."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from clients.cli.watch import summary_table
from service.schemas import PruneReport

STAGES = ("dense", "prune", "train", "recover")
STAGE_LABELS = {"prune": "after pruning", "train": "after training", "recover": "after recovery"}


def perplexity_table(report: PruneReport) -> Table | None:
    rows = [
        (name, p)
        for name, p in (("evaluation", report.perplexity), ("held-out", report.heldout))
        if p is not None
    ]
    if not rows:
        return None
    seen = [s for s in STAGES if any(s == "dense" or s in p.after for _, p in rows)]
    table = Table(title="perplexity per stage", title_justify="left", box=box.SIMPLE)
    table.add_column("data", overflow="fold")
    for s in seen:
        table.add_column(STAGE_LABELS.get(s, s), justify="right")
    for name, p in rows:
        values = {"dense": p.dense, **p.after}
        cells = ["n/a" if values.get(s) is None else f"{values[s]:.3f}" for s in seen]
        table.add_row(name, *cells)
    table.caption = "; ".join(f"{n}: {p.dataset}, {p.windows} x {p.seqlen} tokens" for n, p in rows)
    table.caption_justify = "left"
    return table


def samples_table(report: PruneReport) -> Table | None:
    s = report.samples
    if s is None or not s.prompts:
        return None
    table = Table(
        title=f"samples (greedy, {s.tokens} tokens)",
        title_justify="left",
        box=box.SIMPLE,
        show_lines=True,
    )
    table.add_column("prompt", overflow="fold", style="bold")
    table.add_column("stage", no_wrap=True)
    table.add_column("continuation", overflow="fold")
    for i, prompt in enumerate(s.prompts):
        for j, (stage, texts) in enumerate(s.after.items()):
            table.add_row(prompt if j == 0 else "", STAGE_LABELS.get(stage, stage), texts[i])
    return table


def print_report(report: PruneReport, console: Console | None = None, source: str = "") -> None:
    """Everything a person reads at the end of a run; `source` (a directory, a job) leads the
    title."""
    console = console or Console()
    spec = report.spec
    title = (
        f"{source} pruned {report.architecture} ({report.n_layers} layers) with {spec.method} "
        f"{spec.sparsity}"
    )
    console.print(summary_table(report.summary(), title=title.strip()))
    for table in (perplexity_table(report), samples_table(report)):
        if table is not None:
            console.print(table)
