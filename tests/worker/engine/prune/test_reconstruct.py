"""Block-wise reconstruction inside the walk: masks hold (pruned weights exactly 0, N:M kept),
each block's loss falls, only the current block's pruned Linears change, eager equals lazy,
a killed walk resumes to the uninterrupted result, and a cancel mid-block publishes nothing."""

from __future__ import annotations

import pytest
import torch

from service.schemas import CalibrationSpec, EvalSpec, PruneSpec, partial_dir
from tests.worker.engine.support import Killed, killed_then_resumed, saved_tensors
from worker.engine.errors import Cancelled
from worker.engine.progress import Reporter
from worker.engine.prune.reconstruct import Reconstructor
from worker.engine.run import run

RECON = {"epochs": 2, "lr": 1e-3, "batch_size": 2}


def spec_for(model_dir, calib_file, recon=RECON, **kw) -> PruneSpec:
    kw = {"method": "sparsegpt", "sparsity": "2:4", **kw}
    return PruneSpec(
        model=str(model_dir),
        device="cpu",
        calibration=CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32),
        evaluation=EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=2),
        reconstruction=recon,
        **kw,
    )


def layer_of(name: str) -> int:
    return int(name.split(".layers.")[1].split(".")[0])


@pytest.mark.parametrize("target", ["pruned_input", "dense_input"])
def test_masks_hold_the_loss_falls_and_kept_weights_move(
    tiny_model_dir, calib_file, tmp_path, target
):
    src = tiny_model_dir("llama")
    plain = run(spec_for(src, calib_file, recon=None), tmp_path / "plain")
    report = run(spec_for(src, calib_file, {**RECON, "target": target}), tmp_path / "out")
    assert report.nm_ok and [b.layer for b in report.reconstruction] == [0, 1]
    for b in report.reconstruction:
        assert b.modules == 7 and b.loss_after < b.loss_before, b
        assert len(b.epoch_loss) == 2
    assert set(report.perplexity.after) == {"reconstruct"}
    a, b = saved_tensors(tmp_path / "plain"), saved_tensors(tmp_path / "out")
    for m in report.modules:
        w, w0 = b[m.name + ".weight"], a[m.name + ".weight"]
        assert (w.reshape(w.shape[0], -1, 4) == 0).sum(-1).ge(2).all(), m.name  # 2:4
        assert not torch.equal(w, w0), m.name  # the kept weights trained
        if layer_of(m.name) == 0:  # same inputs as without reconstruction: the same mask
            assert torch.equal(w == 0, w0 == 0), m.name
    assert plain.reconstruction == []


def test_only_the_current_blocks_pruned_linears_change(
    tiny_model_dir, calib_file, tmp_path, monkeypatch
):
    """Around each fit: every tensor of the model but layer i's pruned Linears is unchanged
    (a skipped Linear of the same layer included), and every pruned weight stays 0."""
    import worker.engine.run as engine

    changed: list[tuple[int, set[str]]] = []
    models: list = []
    real_fit, real_prune = Reconstructor.fit, engine.prune

    def prune(state):
        models.append(state.model)
        real_prune(state)

    def fit(self, i, *args):
        before = {n: t.clone() for n, t in models[0].state_dict().items()}
        real_fit(self, i, *args)
        after = models[0].state_dict()
        changed.append((i, {n for n, t in before.items() if not torch.equal(t, after[n])}))
        for name, mm in self.masks:  # the mask state's pruned weights are exactly 0
            assert not after[name + ".weight"][mm.mask()].any(), name

    monkeypatch.setattr(Reconstructor, "fit", fit)
    monkeypatch.setattr(engine, "prune", prune)
    spec = spec_for(tiny_model_dir("llama"), calib_file, skip=["*.mlp.down_proj"])
    run(spec, tmp_path / "out")
    assert [i for i, _ in changed] == [0, 1]
    for i, names in changed:
        expected = {
            f"model.layers.{i}.{p}.weight"
            for p in (
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "mlp.gate_proj",
                "mlp.up_proj",
            )
        }
        assert names == expected, (i, names ^ expected)


def test_eager_equals_lazy(tiny_model_dir, calib_file, tmp_path):
    src = tiny_model_dir("llama4")
    eager = run(
        spec_for(src, calib_file, load="eager", method="wanda", sparsity=0.6), tmp_path / "eager"
    )
    lazy = run(
        spec_for(src, calib_file, load="lazy", method="wanda", sparsity=0.6), tmp_path / "lazy"
    )
    assert lazy.load.startswith("lazy") and eager.load.startswith("eager")
    a, b = saved_tensors(tmp_path / "eager"), saved_tensors(tmp_path / "lazy")
    assert a.keys() == b.keys() and all(torch.equal(t, b[n]) for n, t in a.items())
    strip = lambda r: [x.model_dump(exclude={"seconds"}) for x in r.reconstruction]  # noqa: E731
    assert strip(eager) == strip(lazy)


@pytest.mark.parametrize("load,target", [("lazy", "dense_input"), ("eager", "pruned_input")])
def test_killed_mid_reconstruction_resumes_to_the_uninterrupted_result(
    tiny_model_dir, calib_file, tmp_path, monkeypatch, load, target
):
    src = tiny_model_dir("llama4")
    spec = spec_for(
        src, calib_file, {**RECON, "target": target}, load=load, checkpoint_layers=1, refine="dsnot"
    )
    whole = run(spec, tmp_path / "whole")
    real, kill_at, fitted = Reconstructor.fit, [2], []

    def fit(self, i, *args):
        if i == kill_at[0]:
            kill_at[0] = None
            raise Killed(f"killed while reconstructing layer {i}")
        fitted.append(i)
        real(self, i, *args)

    monkeypatch.setattr(Reconstructor, "fit", fit)
    out = tmp_path / "out"
    again = killed_then_resumed(spec, out, fitted.clear)
    assert again.resumed_at_layer == 2 and fitted == [2, 3]
    a, b = saved_tensors(tmp_path / "whole"), saved_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(t, b[n]) for n, t in a.items())
    strip = lambda r: [x.model_dump(exclude={"seconds"}) for x in r.reconstruction]  # noqa: E731
    assert strip(again) == strip(whole) and again.perplexity == whole.perplexity


class CancelInBlock(Reporter):
    """The user cancels once layer `at` has reported its first reconstruction epoch."""

    def __init__(self, at: int):
        self.at, self.requested, self.messages = at, False, []

    def step(self, done, total, message=None, **values):
        self.messages.append(message)
        if message and message.startswith(f"layer {self.at + 1}/") and "epoch 1/" in message:
            self.requested = True

    def check_cancel(self):
        if self.requested:
            raise Cancelled("cancelled on request")


def test_a_cancel_mid_reconstruction_stops_within_the_epoch_and_leaves_nothing(
    tiny_model_dir, calib_file, tmp_path
):
    reporter, out = CancelInBlock(1), tmp_path / "out"
    spec = spec_for(tiny_model_dir("llama4"), calib_file, {**RECON, "epochs": 3})
    with pytest.raises(Cancelled):
        run(spec, out, reporter=reporter)
    epochs = [m for m in reporter.messages if m and "reconstruction epoch" in m]
    assert epochs[-1].startswith("layer 2/4: reconstruction epoch 1/3")  # no epoch 2
    assert "loss" in epochs[0]
    assert not out.exists() and not partial_dir(out).exists()


def test_fused_moe_experts_keep_their_one_shot_weights(tmp_path, calib_file):
    from transformers import AutoModelForCausalLM

    from tests.support.tiny_arch import make_tiny_arch

    src = make_tiny_arch("mixtral", tmp_path / "mixtral")
    plain = run(
        spec_for(src, calib_file, recon=None, method="wanda", sparsity=0.5), tmp_path / "plain"
    )
    report = run(spec_for(src, calib_file, method="wanda", sparsity=0.5), tmp_path / "out")
    assert all(b.experts_untouched > 0 and b.modules > 0 for b in report.reconstruction)
    dirs = ("plain", "out")
    a, b = (AutoModelForCausalLM.from_pretrained(tmp_path / d).state_dict() for d in dirs)
    # layer 0 is pruned from the same inputs either way: its fused experts are as one-shot
    fused = [n for n, t in a.items() if t.dim() == 3 and ".layers.0." in n]
    assert fused and all(torch.equal(a[n], b[n]) for n in fused)
    attn = [n for n in a if ".layers.0.self_attn." in n and n.endswith("proj.weight")]
    assert attn and all(not torch.equal(a[n], b[n]) for n in attn)  # Linears trained
    assert report.sparsity == pytest.approx(plain.sparsity)
