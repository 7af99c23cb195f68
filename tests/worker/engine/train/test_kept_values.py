"""Recovery trains only the kept weights (masked.KeptValues): the same weights as training
the whole masked weight, with a fraction of the state, exact zeros, and bits that follow the
module's device."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM
from worker.engine.mask_state import MaskState
from worker.engine.masks import n_of_m

from tests.worker.engine.support import pattern
from tests.worker.engine.train.stages import linears
from worker.engine.progress import Reporter
from worker.engine.train.checkpoint import Checkpoints
from worker.engine.train.loop import LoopConfig, train
from worker.engine.train.masked import (
    FixedMask,
    KeptValues,
    attach,
    attach_kept,
    bake,
    original,
    pack_bits,
    unpack_bits,
)
from worker.engine.train.objective import Objective
from worker.engine.train.tasks import Recovery


class FullStateRecovery(Recovery):
    """The whole W trains under a fixed mask (what recovery did before kept values): the
    reference the kept-values task must equal."""

    def attach(self):
        params = {}
        for name, module in self.modules.items():
            attach(module, FixedMask(self.masks.modules[name].mask(), False), master=True)
            params[name] = original(module)
        return params


def _train(model_dir, tmp_path, task_type, precision="fp32", packed=False, steps=6):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    dense = copy.deepcopy(model)
    masks = MaskState()
    for n, m in linears(model).items():
        masks.record(n, n_of_m(m.weight.detach().abs(), 2, 4), pattern("2:4"))
    task = (
        task_type(linears(model), masks, packed_masks=True)
        if packed
        else task_type(linears(model), masks)
    )
    cfg = LoopConfig(
        steps=steps,
        batch_size=2,
        micro_batch=1,
        lr=1e-3,
        warmup_steps=1,
        weight_decay=0.1,
        checkpoint_every=100,
        precision=precision,
        checkpointing=True,
    )
    ids = torch.randint(0, 500, (steps * 2, 16), generator=torch.Generator().manual_seed(0))
    ckpt = Checkpoints(tmp_path / f"ckpt-{task_type.__name__}-{packed}", "recover", "k")
    result = train(model, dense, ids, task, Objective(True, 2.0, 0.0), cfg, Reporter(), ckpt)
    return result, model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kept_values_train_the_same_weights_as_the_whole_masked_weight(
    precision, tiny_model_dir, tmp_path
):
    d = tiny_model_dir("llama")
    kept, m_kept = _train(d, tmp_path, Recovery, precision)
    full, m_full = _train(d, tmp_path, FullStateRecovery, precision)
    t = sum(m.weight.numel() for m in linears(m_kept).values())
    assert kept.trainable_params == t // 2 and full.trainable_params == t  # 2:4: half the state
    tol = 1e-5 if precision == "fp32" else 2e-3
    for name, mod in linears(m_kept).items():
        w, ref = mod.weight, linears(m_full)[name].weight
        assert torch.equal(kept.masks[name], full.masks[name])
        assert (w[kept.masks[name]].view(torch.int32) == 0).all(), name  # exact +0
        torch.testing.assert_close(w, ref, rtol=tol, atol=tol)
    assert kept.loss == pytest.approx(full.loss, rel=tol)


def test_packed_masks_train_the_same_weights_as_bool_masks(tiny_model_dir, tmp_path):
    d = tiny_model_dir("llama")
    _, a = _train(d, tmp_path, Recovery, steps=3)
    _, b = _train(d, tmp_path, Recovery, packed=True, steps=3)
    for name, mod in linears(a).items():
        assert torch.equal(mod.weight, linears(b)[name].weight), name


def test_kept_values_hold_only_the_kept_entries_and_build_in_the_compute_dtype():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 4, bias=False).to(torch.bfloat16)
    pruned = n_of_m(lin.weight.detach().float().abs(), 2, 4)
    w0 = lin.weight.detach().clone()
    attach_kept(lin, KeptValues(pruned, transpose=False, packed=True))
    values = original(lin)
    assert values.shape == (32,) and values.dtype == torch.float32
    assert torch.equal(values, w0[~pruned].float())
    assert lin.weight.dtype == torch.bfloat16 and torch.equal(lin.weight, w0.masked_fill(pruned, 0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert lin.weight.dtype == torch.bfloat16
    lin(torch.randn(3, 16, dtype=torch.bfloat16)).float().square().sum().backward()
    assert values.grad.shape == values.shape  # a gradient for the kept entries only
    with torch.no_grad():
        values.add_(1.0)
    bake(lin, pruned)
    assert lin.weight.dtype == torch.bfloat16 and lin.weight.shape == (4, 16)
    assert (lin.weight[pruned] == 0).all()
    assert torch.equal(lin.weight[~pruned], (w0[~pruned].float() + 1).to(torch.bfloat16))


def test_bits_round_trip_on_the_masks_device():
    mask = torch.rand(7, 13) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == (7 * 13 + 7) // 8
    assert torch.equal(unpack_bits(packed, (7, 13)), mask)
    meta = pack_bits(mask.to("meta"))
    assert meta.device.type == "meta" and unpack_bits(meta, (7, 13)).device.type == "meta"


@pytest.mark.parametrize("how", ["2:4 by row", "unequal rows", "packed"])
def test_the_built_weight_and_the_values_gradient_are_the_masked_ones(how):
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 6, bias=False)
    w0 = lin.weight.detach().clone()
    if how == "unequal rows":
        pruned = torch.rand(6, 16) > 0.5
        pruned[0, :] = False  # row 0 keeps all: counts differ
    else:
        pruned = n_of_m(w0.abs(), 2, 4)
    mask = KeptValues(pruned, transpose=False, packed=how == "packed")
    assert mask.by_row == (how == "2:4 by row")
    attach_kept(lin, mask)
    x = torch.randn(5, 16)
    assert torch.equal(lin.weight, w0.masked_fill(pruned, 0))
    lin(x).square().sum().backward()
    ref = w0.masked_fill(pruned, 0).requires_grad_(True)
    torch.nn.functional.linear(x, ref).square().sum().backward()
    torch.testing.assert_close(original(lin).grad, ref.grad[~pruned])
