"""Every stage on a CUDA GPU with tiny models: the one-shot methods, OWL, DSnoT, lazy loading,
recovery, smp, movement, gmp and resume, each against its CPU run or its guarantees. Marked
`gpu` and skipped where no GPU is visible (never needed for CI); `benchmarks/gpu_check.py`
runs them. Block-wise reconstruction joins this list when the engine has it."""

from __future__ import annotations

import pytest
import torch

from service.schemas import CalibrationSpec, PruneSpec, TrainingSpec, resume_dir
from tests.worker.engine.support import linear_weights
from tests.worker.engine.test_run_training import PREFIX, KillAt, weights
from worker.engine.run import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
]


def spec(model_dir, calib_file, method="wanda", sparsity="2:4", device="cuda", **kw):
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    return PruneSpec(
        model=str(model_dir), method=method, sparsity=sparsity, calibration=cal, device=device, **kw
    )


def training(calib_file, steps=6, **kw) -> TrainingSpec:
    return TrainingSpec(
        dataset=str(calib_file), steps=steps, seqlen=32, batch_size=2, checkpoint_every=2, **kw
    )


def masks_of(path) -> dict:
    return {n: w == 0 for n, w in weights(path)[0].items()}


@pytest.mark.parametrize(
    ("method", "kw"),
    [
        ("magnitude", {}),
        ("wanda", {}),
        ("sparsegpt", {}),
        ("wanda", {"sparsity_profile": "owl"}),
        ("wanda", {"refine": "dsnot"}),
        ("wanda", {"load": "lazy"}),
    ],
)
def test_one_shot_stages_on_cuda_match_the_cpu(tiny_model_dir, calib_file, tmp_path, method, kw):
    model_dir = tiny_model_dir("llama")
    sparsity = 0.5 if "sparsity_profile" in kw else "2:4"
    gpu = run(spec(model_dir, calib_file, method, sparsity, **kw), tmp_path / "gpu")
    cpu = run(spec(model_dir, calib_file, method, sparsity, device="cpu", **kw), tmp_path / "cpu")
    assert gpu.device.startswith("cuda") and gpu.sparsity == pytest.approx(cpu.sparsity)
    a, b = masks_of(tmp_path / "gpu"), masks_of(tmp_path / "cpu")
    agree = sum(int((a[n] == b[n]).sum()) for n in a) / sum(a[n].numel() for n in a)
    assert agree > 0.98  # the same masks but for near-ties rounded otherwise on the GPU


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_recovery_on_cuda_trains_and_never_revives(tiny_model_dir, calib_file, tmp_path, precision):
    model_dir = tiny_model_dir("llama")
    run(spec(model_dir, calib_file), tmp_path / "a")
    rec = training(calib_file, steps=10, lr=3e-3, precision=precision, gradient_checkpointing=True)
    report = run(spec(model_dir, calib_file, recovery=rec), tmp_path / "b")
    before, after = masks_of(tmp_path / "a"), weights(tmp_path / "b")[0]
    for name, w in after.items():
        assert (w[before[name]] == 0).all(), name
    [tr] = report.training
    assert tr.precision == precision and len(tr.loss) == 10 and tr.gradient_checkpointing


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_recovery_offloaded_to_the_host_on_cuda_matches_the_on_device_run(
    tiny_model_dir, calib_file, tmp_path, dtype
):
    """offload cpu (FSDP CPUOffloadPolicy, one NCCL+gloo rank): the same weights as the
    on-device recovery in fp32, the masks kept; a bf16 model (fp32 values beside bf16 norms)
    shards and trains."""
    model_dir = tiny_model_dir("llama")
    kw = dict(steps=6, lr=3e-3, precision="fp32")
    rec = training(calib_file, **kw)
    on = run(spec(model_dir, calib_file, dtype=dtype, recovery=rec), tmp_path / "on")
    rec = training(calib_file, offload="cpu", **kw)
    off = run(spec(model_dir, calib_file, dtype=dtype, recovery=rec), tmp_path / "off")
    a, b = weights(tmp_path / "on")[0], weights(tmp_path / "off")[0]
    for name, w in a.items():
        assert torch.equal(w == 0, b[name] == 0), name
        torch.testing.assert_close(w.float(), b[name].float(), rtol=1e-4, atol=1e-5)
    assert off.training[0].loss == pytest.approx(on.training[0].loss, rel=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_smp_on_cuda_keeps_the_dense_weights_bit_identical(
    tiny_model_dir, calib_file, tmp_path, precision
):
    model_dir = tiny_model_dir("llama")
    ts = training(calib_file, steps=6, lr=0.2, precision=precision)
    run(spec(model_dir, calib_file, "smp", training=ts), tmp_path / "out")
    dense, pruned = weights(model_dir)[0], weights(tmp_path / "out")[0]
    for name, w in pruned.items():
        kept = w != 0
        assert torch.equal(w[kept], dense[name][kept]), name
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(dim=2) >= 2).all(), name


@pytest.mark.parametrize("method", ["movement", "gmp"])
def test_gradual_methods_on_cuda_reach_the_pattern(tiny_model_dir, calib_file, tmp_path, method):
    ts = training(calib_file, steps=8, warmup_steps=1, cooldown_steps=1, prune_every=1)
    report = run(
        spec(tiny_model_dir("llama"), calib_file, method, "2:4", training=ts), tmp_path / "out"
    )
    assert report.nm_ok is True and report.training[0].precision in ("bf16", "fp32")
    for name, w in linear_weights_of(tmp_path / "out").items():
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(dim=2) >= 2).all(), name


def linear_weights_of(path) -> dict:
    from transformers import AutoModelForCausalLM

    return linear_weights(AutoModelForCausalLM.from_pretrained(path).model.layers, PREFIX)


def test_a_killed_cuda_training_resumes_and_ends_as_an_uninterrupted_one(
    tiny_model_dir, calib_file, tmp_path
):
    s = spec(
        tiny_model_dir("llama"),
        calib_file,
        recovery=training(calib_file, steps=7, lr=3e-3, precision="fp32"),
    )
    out = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        run(s, out, reporter=KillAt(5))
    assert (resume_dir(out) / "recover.json").is_file()
    resumed, whole = run(s, out), run(s, tmp_path / "whole")
    assert resumed.training[0].resumed_from_step == 4 and whole.training[0].resumed_from_step == 0
    a, b = weights(out)[0], weights(tmp_path / "whole")[0]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-3, atol=1e-5)
