"""The contract of block-wise reconstruction (EBFT, Guo et al. 2024): its spec and its report.
Pure pydantic, no torch; PruneSpec and PruneReport hold these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.fields import one_of

RECON_TARGETS = ("pruned_input", "dense_input")
BATCH_ABOUT = (
    "calibration windows per optimizer step (at most calibration.nsamples); rounded "
    "up to whole batches of the walk's forward"
)


class ReconstructionSpec(BaseModel):
    """Inside the walk, after a decoder layer is pruned: its pruned Linears' kept weights are
    trained (masks fixed) so its output matches the dense layer's on the calibration windows."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(2, ge=1, le=1000, description="passes over the calibration windows")
    lr: float = Field(
        1e-3, gt=0, le=1, description="peak learning rate (AdamW, linear decay to 0 per layer)"
    )
    batch_size: int = Field(2, ge=1, le=4096, description=BATCH_ABOUT)
    target: str = Field(
        "dense_input",
        description="dense_input: the dense layer's output on the dense model's activations "
        "(a second activation buffer carries the dense model's stream; measured the better of "
        "the two on SmolLM2); pruned_input: the dense layer's output on the pruned model's "
        "activations (EBFT's)",
        json_schema_extra=one_of(RECON_TARGETS),
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="order of the windows in each epoch")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if v not in RECON_TARGETS:
            raise ValueError(f"unknown target {v!r}; allowed: {', '.join(RECON_TARGETS)}")
        return v


class BlockReport(BaseModel):
    """What reconstruction did to one decoder layer. Losses are the normalised mean squared
    error ||Y - Y_dense||^2 / ||Y_dense||^2 over all calibration windows."""

    layer: int
    modules: int  # Linears trained
    params: int  # their weights (kept and pruned)
    experts_untouched: int = Field(
        0, description="fused MoE expert slices (3-D expert tensors): kept as pruned, not trained"
    )
    loss_before: float
    loss_after: float
    epoch_loss: list[float] = Field(default_factory=list, description="mean over each epoch")
    seconds: float = 0.0
