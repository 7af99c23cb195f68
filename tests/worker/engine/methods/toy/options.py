"""The toy method's options."""

from __future__ import annotations

from pydantic import Field

from worker.engine.methods.options import Options


class ToyOptions(Options):
    """Toy: prune the weights nearest a value."""

    centre: float = Field(0.25, description="prune the weights nearest this value")


OPTIONS = ToyOptions
