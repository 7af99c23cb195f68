"""Mixed precision: which dtype `auto` picks, fp32 master weights under bf16 autocast, the
teacher held in bf16 and given back untouched, and the saved weights' guarantees (pruned
weights exactly 0, smp's kept weights bit-identical) at every precision."""

from __future__ import annotations

import pytest
import torch

from tests.worker.engine.train.stages import linears, run_stage
from worker.engine.train import precision
from worker.engine.train.masked import FixedMask, attach, bake, original
from worker.engine.train.precision import autocast, compute_dtype, held_as


def test_auto_is_bf16_where_the_device_computes_it_fast(monkeypatch):
    cpu = torch.device("cpu")
    assert compute_dtype("fp32", cpu) == torch.float32
    assert compute_dtype("bf16", cpu) == torch.bfloat16
    for flags, want in (
        ({"amx_bf16"}, torch.bfloat16),
        ({"avx512_bf16"}, torch.bfloat16),
        ({"avx2", "fma"}, torch.float32),
    ):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert compute_dtype("auto", cpu) == want, flags
    assert compute_dtype("auto", "meta") == torch.float32
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        compute_dtype("fp16", cpu)


def test_autocast_computes_matmuls_in_bf16_only_when_asked():
    a, b = torch.randn(4, 8), torch.randn(8, 4)
    with autocast("cpu", torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("cpu", torch.float32):
        assert (a @ b).dtype == torch.float32


def test_held_as_gives_back_the_very_tensors_and_copies_a_tied_weight_once():
    emb = torch.nn.Embedding(16, 8)
    head = torch.nn.Linear(8, 16, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    model.register_buffer("freq", torch.arange(4.0))
    weight, exact = emb.weight, emb.weight.detach().clone()
    with held_as(model, torch.device("cpu"), torch.bfloat16):
        assert emb.weight.dtype == torch.bfloat16 and emb.weight is head.weight
        assert model.freq.dtype == torch.float32  # buffers keep their dtype
    assert emb.weight is weight and head.weight is weight and torch.equal(weight, exact)


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_smp_keeps_the_dense_weights_bit_identical_and_the_dense_copy_untouched(
    prec, tiny_model_dir, tmp_path
):
    result, model, dense, before = run_stage(
        "smp", tiny_model_dir("llama"), tmp_path, precision=prec
    )
    assert result.precision == prec
    assert all(torch.equal(v, before[k]) for k, v in dense.state_dict().items())
    assert all(p.dtype == torch.float32 for p in dense.parameters())
    for name, mod in linears(model).items():
        w, d = mod.weight, before[f"{name}.weight"]
        kept = ~result.masks[name]
        assert torch.equal(w[kept], d[kept]) and (w[~kept] == 0).all(), name
        assert (w[~kept].view(torch.int32) == 0).all()  # +0, not -0


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_recovery_in_bf16_trains_an_fp32_master_and_saves_exact_zeros(
    stored, tiny_model_dir, tmp_path
):
    result, model, _, before = run_stage(
        "recovery", tiny_model_dir("llama"), tmp_path, precision="bf16", dtype=stored
    )
    assert result.precision == "bf16" and result.checkpointing
    moved = 0
    for name, mod in linears(model).items():
        w, pruned = mod.weight, result.masks[name]
        assert w.dtype == stored and not w.requires_grad, name
        assert (w[pruned] == 0).all(), name
        moved += int((w[~pruned] != before[f"{name}.weight"][~pruned]).sum())
    assert moved > 0  # the kept weights trained


def test_a_bf16_weight_trains_as_an_fp32_master_and_bakes_back_to_bf16():
    lin = torch.nn.Linear(8, 4, bias=False).to(torch.bfloat16)
    torch.nn.init.uniform_(lin.weight, 0.5, 1.0)
    w0 = lin.weight.detach().clone()
    pruned = torch.zeros(4, 8, dtype=torch.bool)
    pruned[:, ::2] = True
    attach(lin, FixedMask(pruned, False), master=True)
    assert original(lin).dtype == torch.float32 and lin.weight.dtype == torch.bfloat16
    with torch.no_grad():
        for _ in range(100):  # each step below half a bf16 ulp (2**-9 near 0.75): lost in bf16
            original(lin).add_(1e-3)
    assert torch.equal(w0 + 1e-3, w0)
    bake(lin, pruned)
    assert lin.weight.dtype == torch.bfloat16 and (lin.weight[pruned] == 0).all()
    want = (w0.float() + 0.1).to(torch.bfloat16)
    assert torch.allclose(lin.weight[~pruned].float(), want[~pruned].float(), atol=1e-2)


def test_cancel_while_a_step_draws_its_windows_keeps_the_state_before_that_step(
    tiny_model_dir, tmp_path
):
    import json

    from worker.engine.data.calibration import Windows, stream_draw
    from worker.engine.errors import Cancelled

    stream = torch.randint(0, 500, (1, 400), generator=torch.Generator().manual_seed(1))
    drawn = []

    def check():  # cancel asked while step 1 draws its second window
        drawn.append(1)
        if len(drawn) == 4:
            raise Cancelled("cancelled on request")

    windows = Windows(stream_draw(stream, 16), 0, 6, check)
    with pytest.raises(Cancelled):
        run_stage("recovery", tiny_model_dir("llama"), tmp_path, ids=windows)
    assert json.loads((tmp_path / "ckpt" / "recovery.json").read_text())["step"] == 1
