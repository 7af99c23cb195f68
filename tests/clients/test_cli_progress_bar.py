"""The local run's display: a spinner for stages without steps, a bar for counted ones, a check
mark or a cross when a stage ends; the span parameter of Reporter.stage is accepted."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.spinner import Spinner

from clients.cli.progress_bar import BarReporter

FRAMES = set(Spinner("dots").frames)


def lines(reporter: BarReporter) -> dict[str, str]:
    """The display as a terminal shows it now: stage name -> its line."""
    out = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    out.print(reporter.bar.get_renderable())
    rows = out.file.getvalue().splitlines()
    return {row.split()[0]: row for row in rows if row.strip()}


def quiet_reporter() -> BarReporter:
    return BarReporter(Console(file=io.StringIO(), force_terminal=False))


def test_stages_without_steps_spin_and_counted_stages_show_a_bar():
    r = quiet_reporter()
    r.stage("load", 0, (0.0, 5.0))
    load = lines(r)["load"]
    assert set(load) & FRAMES and "━" not in load and "%" not in load, load
    r.stage("prune", total=4, span=(10.0, 70.0))
    r.step(1, 4, "layer 1/4")
    shown = lines(r)
    assert "✓" in shown["load"] and not set(shown["load"]) & FRAMES
    assert "━" in shown["prune"] and "25%" in shown["prune"] and "layer 1/4" in shown["prune"]


def test_a_stage_that_starts_uncounted_becomes_a_bar_when_steps_come():
    r = quiet_reporter()
    r.stage("eval_dense")
    r.step(1, 2, "window 1/2")
    assert "━" in lines(r)["eval_dense"] and "50%" in lines(r)["eval_dense"]


def test_a_failed_stage_shows_a_cross():
    r = quiet_reporter()
    with pytest.raises(RuntimeError), r:
        r.stage("load")
        r.stage("save")
        raise RuntimeError("disk full")
    shown = lines(r)
    assert "✓" in shown["load"] and "✗" in shown["save"] and "failed" in shown["save"]
