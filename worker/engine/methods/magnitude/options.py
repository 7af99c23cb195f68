"""Magnitude's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from worker.engine.methods.options import Options


class MagnitudeOptions(Options):
    """Magnitude pruning: score |W|."""

    ONE_SHOT: ClassVar[bool] = True
    STATISTICS: ClassVar[str] = "none"

    magnitude_scope: Literal["matrix", "row"] = Field(
        "matrix", description="one threshold per matrix (the reference) or per output row"
    )


OPTIONS = MagnitudeOptions
