"""A training stage as N processes (FSDP ranks, train/rank.py), started and supervised here.

The worker writes what the ranks need into the stage's resume directory (the pruned model,
the teacher, masks, windows, settings), starts them on a free local port, forwards rank 0's
progress, stops them all when one dies or the job is cancelled, and bakes the trained
weights and masks into its own model as one process would. Checkpoints are the one-process
files, so a stage resumes whatever the process count.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from worker.engine.errors import Cancelled, Interrupted, RankDied
from worker.engine.progress import Reporter
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.loop import LoopConfig, LoopResult
from worker.engine.train.objective import Objective
from worker.engine.train.rank import CANCEL_FILE, RESULT_FILE, TRAINED_FILE

REPO = Path(__file__).resolve().parents[3]
POLL_S = 0.2
STOP_S = 20  # after a cancel or a death, how long the others get to stop before SIGKILL


def train_processes(ts, device: torch.device) -> int:
    """`processes` of a training spec, or its default: the visible GPUs (the most of them
    that divide the batch's micro-batches evenly), 1 on CPU."""
    if ts.processes:
        return ts.processes
    gpus = torch.cuda.device_count() if device.type == "cuda" else 1
    micro = ts.batch_size // ts.micro_batch
    return max(n for n in range(1, gpus + 1) if micro % n == 0)


def train_sharded(
    model,
    teacher,
    ids: torch.Tensor,
    task,
    objective: Objective,
    cfg: LoopConfig,
    reporter: Reporter,
    checkpoints: Checkpoints,
    processes: int,
    device: torch.device,
    offload: str = "none",
) -> LoopResult:
    """`train` over `processes` FSDP ranks (with `offload` "cpu": the trained state in host
    memory); the same result, masks baked into `model`."""
    where = checkpoints.dir / f"{task.stage}.ranks"
    _hand_over(where, model, teacher, ids, task, objective, cfg, checkpoints, device, offload)
    try:
        _supervise(_start(where, processes), where, reporter)
        result = json.loads((where / RESULT_FILE).read_text())
        trained = load_file(str(where / TRAINED_FILE))
        params = task.attach()
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(trained[name])
        masks = task.finish()
    finally:
        shutil.rmtree(where, ignore_errors=True)
    steps = result["loss"], result["times"], result["resumed_from_step"]
    return LoopResult(*steps, result["trainable_params"], masks)


def _hand_over(
    where: Path, model, teacher, ids, task, objective, cfg, checkpoints, device, offload
):
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    model.save_pretrained(where / "student", safe_serialization=True)
    if teacher is not None:
        teacher.save_pretrained(where / "teacher", safe_serialization=True)
    masks = {n: task.masks.modules[n].mask().contiguous() for n in task.modules}
    save_file(masks, str(where / "masks.safetensors"))
    save_file({"ids": ids.contiguous()}, str(where / "ids.safetensors"))
    job = {
        "device": device.type,
        "offload": offload,
        "seed": 0,
        "stage": task.stage,
        "key": checkpoints.key,
        "checkpoints": str(checkpoints.dir),
        "loop": cfg.__dict__,
        "objective": {
            "distill": objective.distill,
            "temperature": objective.temperature,
            "lm_weight": objective.lm_weight,
            "kl_weight": objective.kl_weight,
        },
    }
    (where / "job.json").write_text(json.dumps(job))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(where: Path, processes: int) -> list[subprocess.Popen]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    base = {
        **os.environ,
        "WORLD_SIZE": str(processes),
        "PYTHONPATH": path,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    procs = []
    for rank in range(processes):
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        log = open(where / f"rank{rank}.log", "wb")  # noqa: SIM115 (closed once handed over)
        out = subprocess.PIPE if rank == 0 else log
        cmd = [sys.executable, "-m", "worker.engine.train.rank", str(where)]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=log))
    return procs


def _pipe(proc: subprocess.Popen) -> int:
    """The file descriptor of rank 0's stdout (a pipe)."""
    assert proc.stdout is not None, "rank 0 writes its progress to a pipe"
    return proc.stdout.fileno()


def _supervise(procs: list[subprocess.Popen], where: Path, reporter: Reporter) -> None:
    """Forward rank 0's progress until every rank exits 0; a rank that dies, a cancel or an
    interruption stops them all."""
    os.set_blocking(_pipe(procs[0]), False)
    pending = [""]  # a line rank 0 has not finished writing
    try:
        while True:
            _forward(procs[0], reporter, pending)
            try:
                reporter.check_cancel()
            except (Cancelled, Interrupted):
                (where / CANCEL_FILE).touch()  # the ranks checkpoint and stop together
                _stop(procs, STOP_S)
                raise
            codes = [p.poll() for p in procs]
            dead = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if dead:
                _stop(procs, 0)
                rank, code = dead[0]
                tail = _tail(where / f"rank{rank}.log")
                raise RankDied(
                    f"training rank {rank} of {len(procs)} died (exit {code}){tail}; the "
                    "stage's last checkpoint is kept and the next attempt resumes from it"
                )
            if all(c == 0 for c in codes):
                _forward(procs[0], reporter, pending)
                return
            time.sleep(POLL_S)
    finally:
        _stop(procs, 0)


def _forward(proc: subprocess.Popen, reporter: Reporter, pending: list[str]) -> None:
    """Rank 0's complete progress lines so far, to `reporter`."""
    try:
        chunk = os.read(_pipe(proc), 1 << 20).decode(errors="replace")
    except BlockingIOError:  # nothing new
        chunk = ""
    text = pending[0] + chunk
    *lines, pending[0] = text.split("\n")
    for line in lines:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "warn" in msg:
            reporter.warn(msg["warn"])
        elif "step" in msg:
            loss = {"loss": msg["loss"]} if "loss" in msg else {}
            reporter.step(msg["step"], msg["total"], msg.get("message"), **loss)


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    """Each rank this stage started, by its own pid: wait `grace` s, then SIGKILL."""
    deadline = time.monotonic() + grace
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""
