"""Will training fit? Estimated before any training work, against what the device has."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from worker.engine.errors import ResourceError

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


def training_bytes(
    model: torch.nn.Module, trainable: int, teacher: bool, tokens: int, vocab: int
) -> int:
    """Extra bytes training needs beyond the model already in memory: the teacher copy, the
    trainable parameters' copy, gradient and two AdamW moments (fp32), and activations."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    cfg = model.config
    hidden = getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0)
    layers = getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0)
    acts = tokens * hidden * layers * 24 * 4  # ~24 saved fp32 tensors of width hidden a layer
    logits = tokens * vocab * 4 * 6  # student, teacher, soft-maxes and their gradients
    return (weights if teacher else 0) + trainable * 4 * 4 + acts + logits


def check_fits(need: int, device: torch.device, what: str) -> None:
    have = available_bytes(device)
    if need > have:
        raise ResourceError(
            f"{what} needs about {need / 2**30:.2f} GiB more {device.type} memory but "
            f"{have / 2**30:.2f} GiB is available; lower training.micro_batch or seqlen, "
            "turn distillation off (no teacher copy), or use a larger machine"
        )
