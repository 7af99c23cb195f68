"""Recovery as 2 FSDP processes (gloo, CPU) against 1: a run whose rank is killed resumes from
its last checkpoint, and ends after 20 steps with the same weights within 1e-5 relative."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from service.schemas import PruneSpec
from tests.support.tiny_models import make_tiny_model
from worker.engine.errors import RankDied
from worker.engine.progress import Reporter
from worker.engine.run import run

STEPS = 20
WORDS = " ".join(f"w{i % 31} t{i % 7}" for i in range(4000))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dist")
    (root / "train.txt").write_text(WORDS)
    return make_tiny_model("llama", root / "llama"), root / "train.txt"


def spec(model: Path, text: Path, processes: int, offload: str = "none") -> PruneSpec:
    recovery = {
        "dataset": str(text),
        "steps": STEPS,
        "batch_size": 4,
        "micro_batch": 1,
        "seqlen": 32,
        "holdout": 0,
        "checkpoint_every": 5,
        "processes": processes,
        "offload": offload,
    }
    return PruneSpec(
        model=str(model), method="magnitude", sparsity=0.5, device="cpu", recovery=recovery
    )


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(next(out.glob("*.safetensors"))))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = 0.0
    for name in a:
        rel = (a[name].double() - b[name].double()).norm() / a[name].double().norm().clamp_min(
            1e-30
        )
        assert rel <= 1e-5, (name, float(rel))
        worst = max(worst, float(rel))
    print(f"largest relative difference of a weight matrix: {worst:.2e}")


class KillRank(Reporter):
    """Kills the last process this one started (rank 1) with SIGKILL once step `at` is done."""

    def __init__(self, at: int):
        self.at, self.done = at, False

    def step(self, done: int, total: int, message=None, **values) -> None:
        if done >= self.at and not self.done and total == STEPS:
            children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text()
            os.kill(int(children.split()[-1]), signal.SIGKILL)
            self.done = True


def test_two_processes_killed_and_resumed_train_the_same_weights_as_one(setup, tmp_path):
    """Rank 1 dies after step 7 (checkpoint at step 5); the same spec again resumes at step 5
    and ends with one process's weights and losses."""
    model, text = setup
    one = run(spec(model, text, 1), tmp_path / "one")
    with pytest.raises(RankDied, match="rank 1 of 2 died"):
        run(spec(model, text, 2), tmp_path / "two", reporter=KillRank(at=7))
    two = run(spec(model, text, 2), tmp_path / "two")
    assert two.training[0].resumed_from_step == 5
    assert two.training[0].loss == pytest.approx(one.training[0].loss, abs=2e-6)  # 6 decimals
    assert_same(weights(tmp_path / "one"), weights(tmp_path / "two"))
    assert two.sparsity == one.sparsity and two.modules == one.modules


def test_cpu_offload_trains_the_same_weights_as_one_process(setup, tmp_path):
    """FSDP's CPUOffloadPolicy (trained values, gradients and AdamW state in host memory, the
    optimizer on the CPU) in 1 and 2 gloo ranks gives one process's weights (on a CPU the
    'device' is the host too: this checks the engine's wiring; the memory it saves is a GPU's)."""
    model, text = setup
    one = run(spec(model, text, 1), tmp_path / "one")
    for processes in (1, 2):
        out = tmp_path / f"offload{processes}"
        off = run(spec(model, text, processes, "cpu"), out)
        assert off.training[0].loss == pytest.approx(one.training[0].loss, abs=2e-6)  # 6 decimals
        assert_same(weights(tmp_path / "one"), weights(out))
