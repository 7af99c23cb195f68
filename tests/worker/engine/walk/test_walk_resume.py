"""A walk killed at layer k resumes there: the second attempt prunes only layers >= k, and the
checkpoint and report equal an uninterrupted run's (eager and lazy, with OWL's allocation)."""

from __future__ import annotations

import pytest
import torch

from service.schemas import CalibrationSpec, EvalSpec, PruneSpec, resume_dir
from tests.worker.engine.support import Killed, killed_then_resumed, saved_tensors
from worker.engine.prune.pruner import Pruner
from worker.engine.run import run
from worker.engine.walk.walk_resume import WalkCheckpoints


def spec_for(model_dir, calib_file, **kw) -> PruneSpec:
    return PruneSpec(
        model=str(model_dir),
        device="cpu",
        checkpoint_layers=1,
        calibration=CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32),
        evaluation=EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=2),
        **kw,
    )


@pytest.fixture
def pruned_layers(monkeypatch):
    """Layers whose modules the Pruner pruned, in order; `kill_at[0]` (if set) raises there."""
    real = Pruner.__call__
    seen: list[int] = []
    kill_at: list[int | None] = [None]

    def call(self, names, weights, stats):
        layer = int(names[0].split(".layers.")[1].split(".")[0])
        if layer == kill_at[0]:
            kill_at[0] = None
            raise Killed(f"killed at layer {layer}")
        seen.append(layer)
        return real(self, names, weights, stats)

    monkeypatch.setattr(Pruner, "__call__", call)
    return seen, kill_at


@pytest.mark.parametrize(
    "load,method,sparsity,extra",
    [
        ("lazy", "sparsegpt", "2:4", {}),
        ("eager", "wanda", "0.6", {"sparsity_profile": "owl"}),
        ("eager", "magnitude", "0.5", {}),
    ],
)
def test_resume_at_the_killed_layer_equals_an_uninterrupted_run(
    tiny_model_dir, calib_file, tmp_path, pruned_layers, load, method, sparsity, extra
):
    seen, kill_at = pruned_layers
    spec = spec_for(
        tiny_model_dir("llama4"), calib_file, method=method, sparsity=sparsity, load=load, **extra
    )
    whole = run(spec, tmp_path / "whole")
    assert whole.resumed_at_layer is None
    seen.clear()
    kill_at[0] = 2
    out = tmp_path / "out"
    again = killed_then_resumed(spec, out, seen.clear)
    assert again.resumed_at_layer == 2
    assert seen and min(seen) == 2  # layers 0 and 1 were not pruned again
    a, b = saved_tensors(tmp_path / "whole"), saved_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(t, b[n]) for n, t in a.items())
    assert [m.model_dump() for m in again.modules] == [m.model_dump() for m in whole.modules]
    assert again.perplexity == whole.perplexity and again.sparsity == whole.sparsity
    assert [x.model_dump() for x in again.layers] == [x.model_dump() for x in whole.layers]
    assert not resume_dir(out).exists()  # checkpoints removed when the job ends


def test_a_checkpoint_of_another_spec_is_ignored(
    tiny_model_dir, calib_file, tmp_path, pruned_layers
):
    seen, kill_at = pruned_layers
    src = tiny_model_dir("llama4")
    kill_at[0] = 2
    with pytest.raises(Killed):
        run(spec_for(src, calib_file, method="wanda", sparsity="0.5"), tmp_path / "out")
    seen.clear()
    report = run(spec_for(src, calib_file, method="wanda", sparsity="2:4"), tmp_path / "out")
    assert report.resumed_at_layer is None and min(seen) == 0


def test_checkpoints_due_by_count_or_time(tmp_path, monkeypatch):
    every2 = WalkCheckpoints(tmp_path, "k", every=2)
    assert [every2.due(i, 6) for i in range(1, 7)] == [False, True, False, True, False, False]
    timed = WalkCheckpoints(tmp_path, "k", every=0)
    assert not timed.due(1, 6)  # just created: less than CHECKPOINT_S ago
    monkeypatch.setattr("worker.engine.walk.walk_resume.CHECKPOINT_S", 0.0)
    assert timed.due(1, 6) and not timed.due(6, 6)


def test_the_pieces_a_resume_restores_round_trip_their_own_state():
    """MaskState and the OWL allocator save and load their own state (no private field is
    touched from outside): a restored allocator hands out what the original would."""
    from worker.engine.prune.mask_state import MaskState
    from worker.engine.prune.masks import Pattern
    from worker.engine.prune.owl import OWLAllocator

    masks = MaskState()
    masks.record("a", torch.rand(4, 8) < 0.5, Pattern(0.5))
    again = MaskState()
    again.load_state_dict(masks.state_dict())
    assert torch.equal(again.modules["a"].mask(), masks.modules["a"].mask())
    assert again.modules["a"].pattern == Pattern(0.5)

    first = OWLAllocator(0.5, 0.1, [100, 100, 100], [0.1, 0.2, 0.3])
    first.allocate(0)
    first.achieved(0, 40)  # 10 fewer than given: the debt the next layers make up
    second = OWLAllocator(0.5, 0.1, [100, 100, 100], [0.1, 0.2, 0.3])
    second.load_state_dict(first.state_dict())
    assert second.allocate(1) == first.allocate(1)
    assert second.layers == first.layers
