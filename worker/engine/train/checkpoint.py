"""Checkpoints of the trainable state, so a restarted job resumes at its last saved step.

One safetensors file (trainable tensors and the optimizer's state tensors) plus a JSON file
(step, loss curve, optimizer hyperparameters, and a key that ties it to one job's spec).
Never pickle. Written atomically: a checkpoint is either whole or absent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file


class HasState(Protocol):
    """What a checkpoint saves of an optimizer (or of its whole-tensor view)."""

    def state_dict(self) -> dict[str, Any]: ...


@dataclass
class Saved:
    step: int
    loss: list[float]
    times: list[float] = field(default_factory=list)


class Checkpoints:
    """The checkpoint of one training stage in `directory`, valid only for `key`."""

    def __init__(self, directory: Path, stage: str, key: str):
        self.dir, self.stage, self.key = Path(directory), stage, key

    @property
    def _tensors(self) -> Path:
        return self.dir / f"{self.stage}.safetensors"

    @property
    def _meta(self) -> Path:
        return self.dir / f"{self.stage}.json"

    def save(self, params: dict[str, torch.Tensor], opt: HasState, saved: Saved):
        self.dir.mkdir(parents=True, exist_ok=True)
        state = opt.state_dict()
        tensors = {f"param.{n}": p.detach().cpu().contiguous() for n, p in params.items()}
        for idx, st in state["state"].items():
            for k, v in st.items():
                tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        meta = {
            "key": self.key,
            "step": saved.step,
            "loss": saved.loss,
            "times": saved.times,
            "param_groups": state["param_groups"],
        }
        tmp_t = self._tensors.with_name(self._tensors.name + ".tmp")
        tmp_m = self._meta.with_name(self._meta.name + ".tmp")
        save_file(tensors, str(tmp_t))
        tmp_m.write_text(json.dumps(meta))
        tmp_t.replace(self._tensors)  # tensors first: meta names a complete tensor file
        tmp_m.replace(self._meta)

    def load(self, params: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> Saved | None:
        """Restore into `params` and `opt`; None when there is no checkpoint for this key."""
        if not (self._meta.is_file() and self._tensors.is_file()):
            return None
        meta = json.loads(self._meta.read_text())
        if meta.get("key") != self.key:
            return None  # another job's or another spec's state: start over
        tensors = load_file(str(self._tensors))
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(tensors[f"param.{n}"])
        state: dict = {}
        for name, t in tensors.items():
            if name.startswith("opt."):
                _, idx, k = name.split(".", 2)
                state.setdefault(int(idx), {})[k] = t
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        return Saved(meta["step"], meta["loss"], meta.get("times", []))

    def clear(self) -> None:
        self._tensors.unlink(missing_ok=True)
        self._meta.unlink(missing_ok=True)
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            shutil.rmtree(self.dir, ignore_errors=True)
