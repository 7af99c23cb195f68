"""One FSDP rank of a training stage: `python -m worker.engine.train.rank DIR` with RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. It reads what the worker left in DIR (the
model, teacher, masks, windows and settings; see distributed.py), shards the decoder layers
with torch.distributed's `fully_shard` (with `offload: cpu`, FSDP's CPUOffloadPolicy: the
trained values, their gradients and AdamW state in host memory, the optimizer stepping on the
CPU), and runs the one training loop on its part of every batch. Rank 0 reports progress as
JSON lines on stdout and writes the trained weights.

Where things live on a GPU: each decoder layer is moved to the device by `fully_shard` as it
is sharded (a rank never holds the whole model on its device); the rest of the model
(embeddings, final norm, head) and each layer's frozen tensors (norms) are moved whole; the
masks are held as bits (buffers are not sharded)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard
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

    def __init__(self, mesh, out: Path, offload: str = "none", device=None):
        self.mesh, self.out, self.device = mesh, out, device
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.params: dict = {}
        self.offload = offload

    def _shard(self, model, offload: bool) -> None:
        """Each layer its own FSDP unit over what trains in it (uniform fp32: the kept values);
        its frozen tensors are left whole (`ignored_params`), so a bf16 model's norms do not
        mix dtypes in one all-gather."""
        _, layers = decoder_layers(model)
        trains = any(p.requires_grad for p in model.parameters())
        policy = CPUOffloadPolicy(pin_memory=self.device is not None) if offload else None
        for layer in layers:  # each its own all-gather
            frozen = {p for p in layer.parameters() if not p.requires_grad} if trains else set()
            if self.device is not None:
                _move(frozen, self.device)
            fully_shard(
                layer,
                mesh=self.mesh,
                ignored_params=frozen or None,
                offload_policy=policy or OffloadPolicy(),
            )
        # the rest (embeddings, final norm, head) stays whole on every rank: the loop runs the
        # base model and the head apart (a chunked loss), so a root unit's forward hook, which
        # would gather them, never runs; recovery never trains them

    def wrap(self, model, teacher, params: dict) -> dict:
        names = {id(p): n for n, p in model.named_parameters()}
        keys = {k: names[id(p)] for k, p in params.items()}
        self._shard(model, self.offload == "cpu")
        if teacher is not None:
            self._shard(teacher, False)  # frozen, bf16 on GPUs: sharded over the devices
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


def _move(params, device) -> None:
    with torch.no_grad():
        for p in params:
            p.data = p.data.to(device)


def place_outside_layers(model, device, dtype=None) -> None:
    """Every tensor of `model` outside its decoder layers onto `device` (in `dtype` for the
    floating parameters, if given), a tied weight once; the layers stay where they are until
    `fully_shard` moves each one."""
    _, layers = decoder_layers(model)
    inside = {id(m) for layer in layers for m in layer.modules()}
    done: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for m in model.modules():
            if id(m) in inside:
                continue
            for table in (m._parameters, m._buffers):
                for t in table.values():
                    if t is None or id(t) in done:
                        continue
                    want = dtype if dtype is not None and table is m._parameters else t.dtype
                    t.data = t.data.to(device, want if t.is_floating_point() else t.dtype)
                    done[id(t)] = t


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
    offload = job.get("offload", "none")
    # CPU tensors (the cancel flag, the loss, offloaded gradients' norms) need gloo beside NCCL
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
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
    if device is not None:  # the layers move as they are sharded (FSDPShard)
        place_outside_layers(model, device)
        if teacher is not None:  # held in bf16 on GPUs, as in one process
            teacher.to(torch.bfloat16)
            place_outside_layers(teacher, device)
    masks = load_file(str(where / "masks.safetensors"))
    task = Recovery({n: model.get_submodule(n) for n in masks}, _Masks(masks), packed_masks=True)
    ids = load_file(str(where / "ids.safetensors"))["ids"]
    cfg = LoopConfig(**job["loop"])
    objective = Objective(**job["objective"])
    checkpoints = RankCheckpoints(Path(job["checkpoints"]), job["stage"], job["key"])
    reporter = RankReporter(where)
    try:
        shard = FSDPShard(mesh, where, offload, device)
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
