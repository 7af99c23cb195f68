"""The toy method's options."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from worker.engine.methods.options import Options


class ToyOptions(Options):
    """Toy: prune the weights nearest a value."""

    STATISTICS: ClassVar[str] = "none"  # reads no calibration data

    centre: float = Field(0.25, description="prune the weights nearest this value")


OPTIONS = ToyOptions
