"""Wanda's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar

from worker.engine.methods.options import Options


class WandaOptions(Options):
    """Wanda: score |W| * ||X_j||, lowest per output row; no options."""

    ONE_SHOT: ClassVar[bool] = True


OPTIONS = WandaOptions
