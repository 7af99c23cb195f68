"""SparseGPT's options (torch-free)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from worker.engine.methods.options import Options


class SparseGPTOptions(Options):
    """SparseGPT: column-wise pruning with inverse-Hessian weight updates."""

    STATISTICS: ClassVar[str] = "hessians"
    ONE_SHOT: ClassVar[bool] = True

    blocksize: int = Field(128, ge=1, le=65536, description="SparseGPT column block size")
    percdamp: float = Field(
        0.01, gt=0, le=10, description="SparseGPT damping, as a multiple of mean(diag H)"
    )


OPTIONS = SparseGPTOptions
