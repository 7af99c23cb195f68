"""Will training fit? Estimated before any training work, against what the device has:
`training_memory` is the arithmetic, a pure function of the config's numbers and the
training settings (a planner calls it without a model); `check_fits` the refusal."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from worker.engine.errors import ResourceError
from worker.engine.model.hf_types import HFModel

LIMIT_ENV = "PRUNESERVE_MEMORY_LIMIT_MB"  # caps what the engine may use (e.g. a shared host)


def available_bytes(device: torch.device) -> int:
    """Free memory of `device`: CUDA's free memory, or the host's MemAvailable bounded by the
    cgroup limit (containers) and by PRUNESERVE_MEMORY_LIMIT_MB."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        found = [free]
    else:
        found = [_meminfo_available()]
        cg = _cgroup_room()
        if cg is not None:
            found.append(cg)
    if os.environ.get(LIMIT_ENV):
        found.append(int(float(os.environ[LIMIT_ENV]) * 2**20))
    return min(found)


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) - used


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a model's config that training memory depends on."""

    params: int  # every parameter
    layers: int
    hidden: int
    vocab: int
    weight_bytes: int = 4  # per parameter as loaded: 4 fp32, 2 bf16/fp16

    @classmethod
    def of(cls, model: HFModel) -> ModelShape:
        cfg = model.config
        ps = list(model.parameters())
        return cls(
            params=sum(p.numel() for p in ps),
            layers=getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0),
            hidden=getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0),
            vocab=model.get_output_embeddings().weight.shape[0],
            weight_bytes=ps[0].element_size() if ps else 4,
        )


@dataclass(frozen=True)
class TrainingMemory:
    """Peak bytes of one training step on one device, by part."""

    model: int  # the student's weights (its share of them with FSDP)
    teacher: int  # the teacher held for the stage (and the dense copy, where it shares memory)
    state: int  # per trainable tensor: gradient, two AdamW moments, mask or scores, fp32 master
    activations: int  # what the backward keeps of the decoder layers
    logits: int  # the loss's logits (one chunk, or the whole micro-batch unchunked)

    @property
    def total(self) -> int:
        return self.model + self.teacher + self.state + self.activations + self.logits

    @property
    def extra(self) -> int:
        """Beyond the model already in memory."""
        return self.total - self.model


ACT_TENSORS = 24  # ~saved tensors of width `hidden` per token and decoder layer
LOGIT_TENSORS = 6  # student, teacher, two log-softmaxes, their gradients (fp32)


def training_memory(
    shape: ModelShape,
    trainable: int,
    *,
    teacher: bool,
    precision: str,
    checkpointing: bool,
    micro_batch: int,
    seqlen: int,
    chunked: bool = True,
    processes: int = 1,
    dense_copy_here: bool = False,
) -> TrainingMemory:
    """Peak training memory per device, from numbers alone (no model, no torch work).

    precision "bf16" or "fp32" (resolved, not "auto"): bf16 halves the activations and holds
    the teacher in 2 bytes a weight; a weight stored below fp32 trains as an fp32 master copy.
    checkpointing: the backward keeps each layer's input (fp32) plus one layer's activations.
    chunked: the loss holds `chunk_tokens(vocab)` tokens of logits, else the whole micro-batch.
    processes: FSDP shards weights, teacher and state over them; activations stay per process.
    dense_copy_here: the dense copy lives in this memory too (training on the CPU)."""
    from worker.engine.train.objective import chunk_tokens

    n = max(processes, 1)
    act = 2 if precision == "bf16" else 4
    tokens = micro_batch * seqlen
    teacher_bytes = 0
    if teacher:
        held = 2 if precision == "bf16" else shape.weight_bytes
        teacher_bytes = shape.params * held
        if dense_copy_here and held != shape.weight_bytes:
            teacher_bytes += shape.params * shape.weight_bytes
    per_trainable = 16 + (4 if shape.weight_bytes < 4 else 0)
    layer = tokens * shape.hidden * ACT_TENSORS * act
    if checkpointing:
        activations = shape.layers * tokens * shape.hidden * 4 + layer
    else:
        activations = shape.layers * layer
    logit_tokens = min(chunk_tokens(shape.vocab), tokens) if chunked else tokens
    logits = logit_tokens * shape.vocab * 4 * LOGIT_TENSORS
    if chunked:  # the last hidden states: student (and its gradient) and teacher
        logits += tokens * shape.hidden * (4 * 2 + act)
    return TrainingMemory(
        model=shape.params * shape.weight_bytes // n,
        teacher=teacher_bytes // n,
        state=trainable * per_trainable // n,
        activations=activations,
        logits=logits,
    )


def check_fits(need: int, device: torch.device, what: str) -> None:
    have = available_bytes(device)
    if need > have:
        raise ResourceError(
            f"{what} needs about {need / 2**30:.2f} GiB more {device.type} memory but "
            f"{have / 2**30:.2f} GiB is available; lower training.micro_batch or seqlen, use "
            "precision bf16 and gradient_checkpointing, turn distillation off (no teacher "
            "copy), or use a larger machine"
        )
