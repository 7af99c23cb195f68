"""Everything written beside the checkpoint's weights, in one place: the report, the model
card and the plots (an artifact store carries these files as it carries the weights)."""

from __future__ import annotations

from pathlib import Path

from service.schemas import PruneReport
from worker.engine.publish import card, plots, report


def write(rep: PruneReport, directory: Path, source: Path | None = None) -> list[str]:
    """Write pruning_report.json, README.md and plot_*.png into `directory`; their paths."""
    directory = Path(directory)
    tmp = directory / (card.CARD_FILE + ".tmp")
    tmp.write_text(card.render(rep, source))
    tmp.replace(directory / card.CARD_FILE)
    drawn = plots.draw(rep, directory)
    report.write(rep, directory)
    return [card.CARD_FILE, *drawn]
