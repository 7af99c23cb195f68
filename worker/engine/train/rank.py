"""One FSDP rank of a training stage: `python -m worker.engine.train.rank DIR` with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. It reads what the worker left in DIR (the
model, teacher, masks, windows and settings; see distributed.py), shards the decoder layers
with torch.distributed's `fully_shard`, and runs the one training loop on its part of every
batch. Rank 0 reports progress as JSON lines on stdout and writes the trained weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

from worker.engine.errors import Cancelled
from worker.engine.model.model_io import decoder_layers
from worker.engine.progress import Reporter
from worker.engine.train.checkpoint import Checkpoints, Saved
from worker.engine.train.loop import LoopConfig, OneProcess, train
from worker.engine.train.objective import Objective
from worker.engine.train.tasks import Recovery

CANCEL_FILE = "cancel"  # the worker creates it to stop the ranks at their next step
RESULT_FILE = "result.json"
TRAINED_FILE = "trained.safetensors"


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on this rank (a collective for a sharded one)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


class FSDPShard(OneProcess):
    """Each decoder layer (then the rest) sharded over the ranks; a rank takes batch_size /
    world sequences of each batch; gradients are summed over ranks, not averaged, so the
    step equals one process's over the whole batch."""

    def __init__(self, mesh, out: Path):
        self.mesh, self.out = mesh, out
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.params: dict = {}

    def _shard(self, model) -> None:
        _, layers = decoder_layers(model)
        for layer in layers:  # each its own all-gather
            fully_shard(layer, mesh=self.mesh)
        # the rest (embeddings, final norm, head) stays whole on every rank: the loop runs the
        # base model and the head apart (a chunked loss), so a root unit's forward hook, which
        # would gather them, never runs; recovery never trains them

    def wrap(self, model, teacher, params: dict) -> dict:
        names = {id(p): n for n, p in model.named_parameters()}
        keys = {k: names[id(p)] for k, p in params.items()}
        self._shard(model)
        if teacher is not None:
            self._shard(teacher)
        now = dict(model.named_parameters())
        self.params = {k: now[n] for k, n in keys.items()}
        return self.params

    def rows(self, batch_size: int, micro_batch: int) -> range:
        per = batch_size // self.world
        return range(self.rank * per, (self.rank + 1) * per, micro_batch)

    def total(self, loss: float) -> float:
        """After the step's backward passes: FSDP averaged the gradients over the ranks (gloo
        has no pre-scaled sum), but each rank already scaled its loss by its share of the
        batch, so the sum is wanted: times the world size."""
        with torch.no_grad():
            for p in self.params.values():
                if p.grad is not None:
                    p.grad.mul_(self.world)
        t = torch.tensor([loss], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def finish(self, task) -> dict:
        """The trained tensors, whole, written by rank 0; the worker bakes the masks."""
        trained = {k: full(p.detach()).cpu().contiguous() for k, p in self.params.items()}
        if self.rank == 0:
            save_file(trained, str(self.out / TRAINED_FILE))
        return {}


class _Whole:
    """An optimizer's state_dict with every sharded tensor made whole (for Checkpoints)."""

    def __init__(self, opt: torch.optim.Optimizer):
        sd = opt.state_dict()
        state = {i: {k: full(v) for k, v in st.items()} for i, st in sd["state"].items()}
        self._sd = {"state": state, "param_groups": sd["param_groups"]}

    def state_dict(self) -> dict:
        return self._sd


class RankCheckpoints(Checkpoints):
    """The same files as one process writes (so a job resumes whatever its process count):
    rank 0 writes whole tensors; every rank loads its own shards."""

    def save(self, params, opt, saved: Saved) -> None:
        whole = {n: full(p.detach()) for n, p in params.items()}
        opt_whole = _Whole(opt)
        if dist.get_rank() == 0:
            super().save(whole, opt_whole, saved)
        dist.barrier()

    def load(self, params, opt) -> Saved | None:
        if not (self._meta.is_file() and self._tensors.is_file()):
            return None
        meta = json.loads(self._meta.read_text())
        if meta.get("key") != self.key:
            return None
        tensors = load_file(str(self._tensors))
        order = list(params.values())
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(_like(tensors[f"param.{n}"], p))
        state: dict = {}
        for name, t in tensors.items():
            if name.startswith("opt."):
                _, idx, k = name.split(".", 2)
                ref = order[int(idx)]
                state.setdefault(int(idx), {})[k] = _like(t, ref) if t.shape == ref.shape else t
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        return Saved(meta["step"], meta["loss"], meta.get("times", []))

    def clear(self) -> None:
        dist.barrier()
        if dist.get_rank() == 0:
            super().clear()


def _like(whole: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(ref, DTensor):
        return distribute_tensor(whole.to(ref.dtype), ref.device_mesh, ref.placements)
    return whole


class RankReporter(Reporter):
    """Rank 0 prints progress as JSON lines; every rank stops together when the worker asks."""

    def __init__(self, out: Path):
        self.out, self.rank = out, dist.get_rank()

    def step(self, done: int, total: int, message: str | None = None, **values: float) -> None:
        if self.rank == 0:
            line = {"step": done, "total": total, "message": message, **values}
            print(json.dumps(line), flush=True)

    def warn(self, message: str) -> None:
        if self.rank == 0:
            print(json.dumps({"warn": message}), flush=True)

    def check_cancel(self) -> None:
        flag = torch.tensor([float((self.out / CANCEL_FILE).exists())])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise Cancelled("cancelled")


class _Masks:
    """The masks of the pruned modules, as Recovery reads them (`modules[name].mask()`)."""

    class _One:
        def __init__(self, t: torch.Tensor):
            self.t = t

        def mask(self) -> torch.Tensor:
            return self.t

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.modules = {n: self._One(m) for n, m in masks.items()}


def main(where: Path) -> None:
    from transformers import AutoModelForCausalLM

    job = json.loads((where / "job.json").read_text())
    cuda = job["device"] == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", rank % torch.cuda.device_count()) if cuda else None
    if device is not None:
        torch.cuda.set_device(device)
    mesh = init_device_mesh("cuda" if cuda else "cpu", (dist.get_world_size(),))
    torch.manual_seed(job["seed"])
    model = AutoModelForCausalLM.from_pretrained(where / "student", torch_dtype="auto")
    teacher = None
    if (where / "teacher").is_dir():
        teacher = AutoModelForCausalLM.from_pretrained(where / "teacher", torch_dtype="auto")
        teacher.eval()
    if device is not None:
        model.to(device)
        teacher = teacher.to(device, torch.bfloat16) if teacher is not None else None  # as run.py
    masks = load_file(str(where / "masks.safetensors"))
    task = Recovery({n: model.get_submodule(n) for n in masks}, _Masks(masks))
    ids = load_file(str(where / "ids.safetensors"))["ids"]
    cfg = LoopConfig(**job["loop"])
    objective = Objective(**job["objective"])
    checkpoints = RankCheckpoints(Path(job["checkpoints"]), job["stage"], job["key"])
    reporter = RankReporter(where)
    try:
        shard = FSDPShard(mesh, where)
        result = train(model, teacher, ids, task, objective, cfg, reporter, checkpoints, shard)
    except Cancelled:
        dist.destroy_process_group()
        sys.exit(4)
    if rank == 0:
        keep = ("loss", "times", "resumed_from_step", "trainable_params")
        out = {k: getattr(result, k) for k in keep}
        (where / RESULT_FILE).write_text(json.dumps(out))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
