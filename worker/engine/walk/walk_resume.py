"""Resume the walk at the last finished layer. After a layer is written (every `every` layers,
or, by default, whenever CHECKPOINT_S seconds passed since the last save) this saves what the
walk needs to go on: the activations that feed the next layer, the masks, scores and results
so far, the report so far, the per-layer allocation (OWL) and where the finished layers are.

Finished layers' weights: in lazy mode they are already in the streaming output's shards; in
eager mode (where they stay in memory) each is written once to `layer-<i>.safetensors` here
by the first checkpoint after it, so a job that never checkpoints writes nothing extra. Tensors go
to safetensors, the rest to JSON (never pickle), atomically, tied to the spec by `key`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worker.engine.prune.mask_state import MaskCheck

CHECKPOINT_S = 5.0  # the default: save after a layer when this long passed since the last save
STATE, TENSORS = "walk.json", "walk.safetensors"


@dataclass
class WalkState:
    next_layer: int
    inps: torch.Tensor | None  # the input of `next_layer` (None: no calibration)
    tensors: dict[str, torch.Tensor]  # masks, scores (by the caller's own keys)
    meta: dict  # the caller's JSON state


class WalkCheckpoints:
    """The walk's checkpoint in `directory`, valid only for `key`."""

    def __init__(self, directory: Path, key: str, every: int = 0):
        self.dir, self.key, self.every = Path(directory), key, every
        self._last = time.monotonic()

    def due(self, finished: int, n_layers: int) -> bool:
        """Whether to save after `finished` layers (never after the last: the walk is over)."""
        if finished >= n_layers:
            return False
        if self.every:
            return finished % self.every == 0
        return time.monotonic() - self._last >= CHECKPOINT_S

    def save_layer(self, i: int, layer: nn.Module) -> None:
        """Eager mode: layer i's final weights, once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"layer-{i}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        state = {n: t.detach().cpu().contiguous() for n, t in layer.state_dict().items()}
        save_file(state, str(tmp))
        tmp.replace(path)

    def load_layer(self, i: int, layer: nn.Module) -> None:
        layer.load_state_dict(load_file(str(self.dir / f"layer-{i}.safetensors")))

    def save(self, state: WalkState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"t.{k}": v.detach().cpu().contiguous() for k, v in state.tensors.items()}
        if state.inps is not None:
            tensors["inps"] = state.inps.detach().cpu().contiguous()
        meta = {"key": self.key, "next_layer": state.next_layer, "meta": state.meta}
        tmp_t, tmp_m = self.dir / (TENSORS + ".tmp"), self.dir / (STATE + ".tmp")
        save_file(tensors, str(tmp_t))
        tmp_m.write_text(json.dumps(meta))
        tmp_t.replace(self.dir / TENSORS)  # tensors first: the state names a complete file
        tmp_m.replace(self.dir / STATE)
        self._last = time.monotonic()

    def load(self) -> WalkState | None:
        """The saved state, or None when there is none for this key."""
        meta_path, tensors_path = self.dir / STATE, self.dir / TENSORS
        if not (meta_path.is_file() and tensors_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != self.key:
            return None
        tensors = load_file(str(tensors_path))
        inps = tensors.pop("inps", None)
        own = {k.removeprefix("t."): v for k, v in tensors.items()}
        return WalkState(meta["next_layer"], inps, own, meta["meta"])

    def clear(self) -> None:
        for p in list(self.dir.glob("layer-*.safetensors")) + [
            self.dir / STATE,
            self.dir / TENSORS,
        ]:
            p.unlink(missing_ok=True)
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            shutil.rmtree(self.dir, ignore_errors=True)


# -- what a run's walk keeps, to and from a WalkState ---------------------------------------
def snapshot(run, pruner, next_layer: int, inps: torch.Tensor | None) -> WalkState:
    """The state of `run` (worker.engine.run.Run) and its `pruner` after `next_layer` layers:
    each stateful piece's own state_dict, its tensors to safetensors and the rest to JSON."""
    masks, pruned = run.masks.state_dict(), pruner.state_dict()
    tensors = {f"mask.{n}": t for n, t in masks["packed"].items()}
    tensors.update({f"score.{n}": t for n, t in pruned["scores"].items()})
    weights = run.streamer.weights
    meta = {
        "load": "lazy" if weights is not None else "eager",
        "masks": masks["masks"],
        "results": pruned["results"],
        "owl": pruned["owl"],
        "lazy": None if weights is None else weights.state_dict(),
        "checks": [asdict(c) for c in run.checks.values()],
        "counts": list(run.counts),
        "report": run.report.model_dump(
            mode="json", include={"perplexity", "heldout", "samples", "tasks", "warnings"}
        ),
    }
    return WalkState(next_layer, inps, tensors, meta)


def _tensors(state: WalkState, prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.tensors.items() if k.startswith(prefix)}


def restore(run, pruner, state: WalkState) -> None:
    """Put `state` back into `run` and `pruner` (the walk then starts at state.next_layer)."""
    meta = state.meta
    run.masks.load_state_dict({"masks": meta["masks"], "packed": _tensors(state, "mask.")})
    pruner.load_state_dict(
        {"results": meta["results"], "scores": _tensors(state, "score."), "owl": meta["owl"]}
    )
    for c in meta["checks"]:
        run.checks[c["name"]] = MaskCheck(**{**c, "shape": tuple(c["shape"])})
    run.counts = tuple(meta["counts"])
