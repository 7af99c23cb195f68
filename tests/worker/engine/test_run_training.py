"""The training stages through run(): smp keeps every surviving weight bit-identical and hits
the exact pattern; recovery never revives a pruned weight; distillation loss falls; a killed
run resumes from its checkpoint and ends equal to an uninterrupted one; memory is checked
before any work."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from service.schemas import CalibrationSpec, PruneSpec, TrainingSpec, resume_dir
from tests.worker.engine.support import linear_weights, pattern
from worker.engine.errors import (
    CalibrationError,
    Cancelled,
    Interrupted,
    ResourceError,
    SpecError,
)
from worker.engine.methods.smp.prune import initial_scores, select
from worker.engine.methods.wanda.prune import wanda_score
from worker.engine.progress import Reporter
from worker.engine.prune.masks import n_of_m
from worker.engine.run import run
from worker.engine.walk.stats import InputStats

PREFIX = "model.layers"


def spec(model_dir, calib_file, method, sparsity, **kw) -> PruneSpec:
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    return PruneSpec(
        model=str(model_dir), method=method, sparsity=sparsity, calibration=cal, device="cpu", **kw
    )


def training(calib_file, steps=6, **kw) -> TrainingSpec:
    return TrainingSpec(
        dataset=str(calib_file), steps=steps, seqlen=32, batch_size=2, checkpoint_every=2, **kw
    )


def weights(path):
    model = AutoModelForCausalLM.from_pretrained(path)
    return linear_weights(model.model.layers, PREFIX), model.state_dict()


@pytest.mark.parametrize("sparsity", ["2:4", "0.5"])
def test_initial_scores_reproduce_the_init_mask(sparsity):
    torch.manual_seed(0)
    w = torch.randn(6, 32)
    stats = InputStats(False, 64, 16)
    stats.add(torch.randn(4, 16, 32))
    p = pattern(sparsity)
    score = wanda_score(w, stats.col_norm_sq)
    init = n_of_m(score, 2, 4) if p.is_nm else score <= score.kthvalue(16, dim=1, keepdim=True)[0]
    lifted = init.flip(1)  # same counts per row and group, not the Wanda order (as SparseGPT)
    assert not torch.equal(lifted, init)
    for scope in ("row", "matrix"):  # a selection over the whole matrix starts there too
        assert torch.equal(select(p, scope)(initial_scores(w, init, stats, p)), init)
        assert torch.equal(select(p, scope)(initial_scores(w, lifted, stats, p)), lifted)


@pytest.mark.parametrize(
    ("sparsity", "scope"), [("2:4", "matrix"), ("0.5", "row"), ("0.5", "matrix")]
)
def test_smp_learns_a_mask_over_frozen_dense_weights(
    tiny_model_dir, calib_file, tmp_path, sparsity, scope
):
    model_dir = tiny_model_dir("llama")
    ts = training(calib_file, steps=8, lr=0.2)
    s = spec(model_dir, calib_file, "smp", sparsity, training=ts, options={"scope": scope})
    report = run(s, tmp_path / "out")
    dense, _ = weights(model_dir)
    pruned, _ = weights(tmp_path / "out")
    init = run(spec(model_dir, calib_file, "wanda", sparsity), tmp_path / "wanda")
    wanda_w, _ = weights(tmp_path / "wanda")
    changed = 0
    for name, w in pruned.items():
        kept = w != 0
        assert torch.equal(w[kept], dense[name][kept]), name  # bit-identical survivors
        if ":" in sparsity:
            assert ((w == 0).reshape(w.shape[0], -1, 4).sum(dim=2) >= 2).all(), name
        elif scope == "row":
            assert ((w == 0).sum(dim=1) == w.shape[1] // 2).all(), name  # exact per row
        else:
            assert int((w == 0).sum()) == w.numel() // 2, name  # exact per matrix
        changed += int(((w == 0) != (wanda_w[name] == 0)).sum())
    assert changed > 0  # the mask was learned, not just Wanda's
    [tr] = report.training
    assert tr.stage == "train" and tr.steps == 8 and len(tr.loss) == 8
    assert "scores" in tr.trainable and tr.teacher.startswith("the dense model")
    assert report.nm_ok is (True if ":" in sparsity else None)
    assert init.sparsity == pytest.approx(report.sparsity)


def test_recovery_trains_kept_weights_and_never_revives_pruned_ones(
    tiny_model_dir, calib_file, tmp_path
):
    model_dir = tiny_model_dir("llama")
    one_shot = run(spec(model_dir, calib_file, "wanda", "2:4"), tmp_path / "a")
    rec = training(calib_file, steps=20, lr=3e-3)
    report = run(spec(model_dir, calib_file, "wanda", "2:4", recovery=rec), tmp_path / "b")
    before, before_sd = weights(tmp_path / "a")
    after, after_sd = weights(tmp_path / "b")
    moved = 0
    for name, w in after.items():
        assert torch.equal(w == 0, before[name] == 0) or ((w == 0) >= (before[name] == 0)).all()
        assert (w[before[name] == 0] == 0).all(), name
        moved += int((w != before[name]).sum())
    assert moved > 0
    # only the pruned Linears train: embeddings, norms and the head stay as they were
    for name, t in after_sd.items():
        if not any(name.startswith(n) for n in after):
            assert torch.equal(t, before_sd[name]), name
    assert report.nm_ok is True and one_shot.nm_ok is True
    [tr] = report.training
    assert tr.stage == "recover" and len(tr.loss) == 20
    assert sum(tr.loss[-5:]) < sum(tr.loss[:5])  # distillation loss falls


class KillAt(Reporter):
    """Dies (like a killed worker) right after optimizer step `at` of training."""

    def __init__(self, at: int):
        self.at, self.stage_name = at, ""

    def stage(self, name, total=0, span=(0.0, 100.0)):
        self.stage_name = name

    def step(self, done, total, message=None, **values):
        if self.stage_name in ("train", "recover") and done == self.at:
            raise RuntimeError("killed")


class Warnings(Reporter):
    def __init__(self):
        self.seen = []

    def warn(self, message):
        self.seen.append(message)


def test_a_killed_training_resumes_from_its_checkpoint(tiny_model_dir, calib_file, tmp_path):
    model_dir = tiny_model_dir("llama")
    rec = training(calib_file, steps=7, lr=3e-3)
    s = spec(model_dir, calib_file, "wanda", "2:4", recovery=rec)
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        run(s, out, reporter=KillAt(5))  # checkpoints at steps 2 and 4
    assert (resume_dir(out) / "recover.json").is_file() and not out.exists()
    told = Warnings()
    resumed = run(s, out, reporter=told)
    assert "resuming recover at step 4 of 7 from the previous attempt's checkpoint" in told.seen
    whole = run(s, tmp_path / "whole")
    assert resumed.training[0].resumed_from_step == 4 and whole.training[0].resumed_from_step == 0
    assert len(resumed.training[0].loss) == 7
    assert resumed.training[0].loss == pytest.approx(whole.training[0].loss, rel=1e-4)
    a, _ = weights(out)
    b, _ = weights(tmp_path / "whole")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    assert not resume_dir(out).exists()


class LoseStoreAt(KillAt):
    """The job store becomes unreachable as step `at` of training is reported."""

    def step(self, done, total, message=None, **values):
        if self.stage_name in ("train", "recover") and done == self.at:
            raise Interrupted("Redis was unreachable")


def test_an_interrupted_training_checkpoints_its_last_step_and_resumes_there(
    tiny_model_dir, calib_file, tmp_path
):
    rec = training(calib_file, steps=5, lr=3e-3)  # checkpoint_every=2
    s = spec(tiny_model_dir("llama"), calib_file, "wanda", "2:4", recovery=rec)
    out = tmp_path / "o"
    with pytest.raises(Interrupted):
        run(s, out, reporter=LoseStoreAt(3))
    resumed = run(s, out)
    assert resumed.training[0].resumed_from_step == 3 and len(resumed.training[0].loss) == 5


class CancelAt(KillAt):
    """Cancels once training step `at` was reported."""

    def __init__(self, at: int):
        super().__init__(at)
        self.done = 0

    def step(self, done, total, message=None, **values):
        if self.stage_name == "train":
            self.done = done

    def check_cancel(self):
        if self.stage_name == "train" and self.done >= self.at:
            raise Cancelled("cancelled on request")


def test_cancel_during_training_checkpoints_then_stops(tiny_model_dir, calib_file, tmp_path):
    s = spec(tiny_model_dir("llama"), calib_file, "smp", "2:4", training=training(calib_file))
    with pytest.raises(Cancelled):
        run(s, tmp_path / "o", reporter=CancelAt(1))  # checkpoints every 2 steps: not at 1
    assert (resume_dir(tmp_path / "o") / "train.safetensors").is_file()


class Stages(Reporter):
    def __init__(self):
        self.names = []

    def stage(self, name, total=0, span=(0.0, 100.0)):
        self.names.append(name)


def test_training_that_cannot_fit_is_refused_before_any_work(
    tiny_model_dir, calib_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("PRUNESERVE_MEMORY_LIMIT_MB", "1")
    rec = Stages()
    s = spec(tiny_model_dir("llama"), calib_file, "wanda", "2:4", recovery=training(calib_file))
    with pytest.raises(ResourceError, match="training stage 'recover' needs about"):
        run(s, tmp_path / "o", reporter=rec)
    assert rec.names == ["load"]


def test_training_is_only_for_methods_that_learn(calib_file):
    with pytest.raises(ValueError, match="method 'wanda' does not train; training is for smp"):
        PruneSpec(model="org/m", method="wanda", sparsity=0.5, training=TrainingSpec())
    assert PruneSpec(model="org/m", method="smp", sparsity=0.5).training == TrainingSpec()


@pytest.mark.parametrize("field", ["training", "recovery", "calibration", "evaluation"])
def test_a_service_run_never_reads_a_file_path_dataset(tiny_model_dir, calib_file, tmp_path, field):
    model_dir = tiny_model_dir("llama")
    data = {
        "model": model_dir.name,
        "method": "smp" if field == "training" else "wanda",
        "sparsity": "2:4",
        "device": "cpu",
        field: {"dataset": str(calib_file)},
    }
    if field == "recovery":
        data[field]["steps"] = 2
    s = PruneSpec.model_validate(data)
    with pytest.raises(SpecError, match=f"{field}.dataset: .* is a file path"):
        run(s, tmp_path / "o", models_dir=model_dir.parent, allow_local=False)
    assert not (tmp_path / "o").exists()


def test_training_data_too_short_is_named_as_training_data(tiny_model_dir, calib_file, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("ab\n\ncd\n\nef")
    rec = TrainingSpec(dataset=str(short), steps=2, seqlen=32, batch_size=2)
    s = spec(tiny_model_dir("llama"), calib_file, "wanda", "2:4", recovery=rec)
    with pytest.raises(CalibrationError) as err:
        run(s, tmp_path / "o")
    assert str(err.value).startswith("recovery.dataset (--train-data): the training text has ")
    assert "; recovery.seqlen (--train-seqlen) 32 needs at least 33" in str(err.value)
