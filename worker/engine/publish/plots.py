"""PNG plots of a report (matplotlib, Agg): training loss per step, perplexity per stage,
per-layer sparsity given vs achieved (OWL), per-block reconstruction loss when present."""

from __future__ import annotations

from pathlib import Path

from service.schemas import PruneReport

PREFIX = "plot_"  # beside the weights, as every other artifact (no folder)
STAGE_ORDER = ("dense", "prune", "train", "recover")


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # never a display; safe in worker processes
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def training_loss(report: PruneReport, ax) -> bool:
    drawn = False
    for t in report.training:
        if t.loss:
            ax.plot(range(1, len(t.loss) + 1), t.loss, label=f"{t.stage} ({t.objective})")
            drawn = True
    ax.set(title="Training loss per step", xlabel="step", ylabel="loss")
    return drawn


def perplexity(report: PruneReport, ax) -> bool:
    series = [
        (n, p)
        for n, p in (("evaluation", report.perplexity), ("held-out", report.heldout))
        if p is not None
    ]
    for name, p in series:
        values = {"dense": p.dense, **p.after}
        stages = [s for s in STAGE_ORDER if values.get(s) is not None]
        ax.plot(stages, [values[s] for s in stages], marker="o", label=f"{name} ({p.dataset})")
    ax.set(title="Perplexity per stage", ylabel="perplexity")
    ax.set_yscale("log")
    return bool(series)


def layer_sparsity(report: PruneReport, ax) -> bool:
    if not report.layers:
        return False
    idx = [x.index for x in report.layers]
    ax.bar([i - 0.2 for i in idx], [x.sparsity for x in report.layers], 0.4, label="given (OWL)")
    ax.bar([i + 0.2 for i in idx], [x.achieved for x in report.layers], 0.4, label="achieved")
    ax.set(title="Sparsity per layer", xlabel="decoder layer", ylabel="sparsity")
    return True


def reconstruction_entries(report: PruneReport) -> list[dict]:
    """Per-block entries of the report's `reconstruction` (a list, or {"blocks": [...]})."""
    raw = report.model_dump(mode="json").get("reconstruction")
    if isinstance(raw, dict):
        raw = raw.get("blocks")
    return [e for e in raw or [] if isinstance(e, dict)]


def reconstruction_loss(report: PruneReport, ax) -> bool:
    entries = reconstruction_entries(report)
    keys = sorted(
        {k for e in entries for k, v in e.items() if "loss" in k and isinstance(v, int | float)}
    )
    for key in keys:
        pts = [
            (e.get("block", e.get("index", i)), e[key])
            for i, e in enumerate(entries)
            if isinstance(e.get(key), int | float)
        ]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    ax.set(title="Reconstruction loss per block", xlabel="block", ylabel="loss")
    return bool(keys)


PLOTS = {
    f"{PREFIX}training_loss.png": training_loss,
    f"{PREFIX}perplexity.png": perplexity,
    f"{PREFIX}layer_sparsity.png": layer_sparsity,
    f"{PREFIX}reconstruction_loss.png": reconstruction_loss,
}


def draw(report: PruneReport, directory: Path) -> list[str]:
    """Write every plot the report has data for into `directory`; their names."""
    written = []
    for name, plot in PLOTS.items():
        fig, ax = _figure()
        if not plot(report, ax):
            continue
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        _save(fig, Path(directory) / name)
        written.append(name)
    return written
