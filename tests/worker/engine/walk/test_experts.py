"""Fused mixture-of-experts weights: every expert matrix is pruned to the target with
statistics of exactly the tokens routed to it; routers stay dense; the report counts all
decoder weights.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from service.schemas import CalibrationSpec, PruneSpec
from tests.support.tiny_arch import make_tiny_arch
from tests.worker.engine.support import stable_lowest_per_row, walk_model
from worker.engine.run import run
from worker.engine.walk.experts import is_experts

MOE = ["mixtral", "qwen3_moe", "qwen2_moe", "olmoe"]


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe")
    made = {}

    def make(model_type: str):
        if model_type not in made:
            made[model_type] = make_tiny_arch(model_type, root / model_type)
        return made[model_type]

    return make


def experts_of(model) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if is_experts(m)}


def expert_matrices(model):
    """name[e] -> expert e's slice of every fused 3-D expert parameter."""
    return {
        f"{n}.{p}[{e}]": t[e]
        for n, m in experts_of(model).items()
        for p, t in m.named_parameters(recurse=False)
        if t.dim() == 3
        for e in range(t.shape[0])
    }


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("model_type", MOE)
def test_every_expert_matrix_reaches_the_target(moe_dir, calib_file, tmp_path, model_type, method):
    src = moe_dir(model_type)
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    spec = PruneSpec(model=str(src), method=method, sparsity=0.5, calibration=cal, device="cpu")
    report = run(spec, tmp_path / "out")
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    dense = AutoModelForCausalLM.from_pretrained(src)
    mats = expert_matrices(pruned)
    assert len(mats) >= 8
    for name, w in mats.items():
        assert 0.5 <= (w == 0).float().mean().item() < 0.52, name
    named = {m.name for m in report.modules}
    assert set(mats) <= named  # each expert matrix reported as its own module
    # routers (gates) stay dense
    dense_sd = dense.state_dict()
    routers = [
        k
        for k in dense_sd
        if k.endswith(("gate.weight", "router.weight")) and dense_sd[k].shape[0] == 4
    ]
    assert routers
    for k in routers:
        assert torch.equal(pruned.state_dict()[k], dense_sd[k]), k
    assert 0.45 < report.decoder_sparsity <= 0.52
    assert not [w for w in report.warnings if "not pruned" in w]


def test_skipping_experts_is_a_warning_and_decoder_sparsity_tells(moe_dir, calib_file, tmp_path):
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    spec = PruneSpec(
        model=str(moe_dir("mixtral")),
        method="wanda",
        sparsity=0.5,
        calibration=cal,
        device="cpu",
        skip=["*experts*"],
    )
    report = run(spec, tmp_path / "out")
    assert report.sparsity == pytest.approx(0.5, abs=0.01)  # over what was pruned
    assert report.decoder_sparsity < 0.3  # most decoder weights are dense experts
    assert any("of the decoder weights are not pruned" in w for w in report.warnings)


def routed_inputs(model, layer_idx: int, ids):
    """Expert e's (first projection input, down projection input) in a plain forward of the
    dense model, computed here from the experts module's call arguments."""
    name, experts = next(
        (n, m) for n, m in experts_of(model).items() if n.startswith(f"model.layers.{layer_idx}.")
    )
    seen = {}

    def hook(mod, args, kwargs):
        seen["x"], seen["idx"] = args[0], args[1]

    h = experts.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    h.remove()
    x, idx = seen["x"].reshape(-1, seen["x"].shape[-1]), seen["idx"]
    out = {}
    for e in range(experts.gate_up_proj.shape[0]):
        xe = x[(idx == e).any(dim=-1)]
        gate, up = torch.nn.functional.linear(xe, experts.gate_up_proj[e]).chunk(2, dim=-1)
        out[e] = (xe, experts.act_fn(gate) * up)
    return name, experts, out


def wanda_mask(w, x):
    return stable_lowest_per_row(w.abs() * x.float().square().sum(0).sqrt(), w.shape[1] // 2)


def test_wanda_expert_statistics_come_from_routed_tokens_only(moe_dir):
    model = AutoModelForCausalLM.from_pretrained(moe_dir("mixtral")).eval()
    ids = torch.randint(4, 260, (4, 32), generator=torch.Generator().manual_seed(3))
    name, experts, routed = routed_inputs(model, 0, ids)
    dense = {p: getattr(experts, p).detach().clone() for p in ("gate_up_proj", "down_proj")}
    walk_model(model, "model.layers", ids)
    counts = [xe.shape[0] for xe, _ in routed.values()]
    assert all(0 < c < ids.numel() for c in counts)  # each expert sees some, not all, tokens
    for e, (xe, he) in routed.items():
        for p, x in (("gate_up_proj", xe), ("down_proj", he)):
            got = getattr(experts, p)[e] == 0
            assert torch.equal(got, wanda_mask(dense[p][e], x)), f"{name}.{p}[{e}]"
    # guard: norms over every token of the layer would choose different weights
    x_all = torch.cat([xe for xe, _ in routed.values()])
    e0 = experts.gate_up_proj[0] == 0
    assert not torch.equal(e0, wanda_mask(dense["gate_up_proj"][0], x_all))


def test_an_expert_without_routed_tokens_is_pruned_by_magnitude_with_a_warning(moe_dir):
    model = AutoModelForCausalLM.from_pretrained(moe_dir("mixtral")).eval()
    experts = experts_of(model)["model.layers.1.mlp.experts"]

    def never_expert_3(mod, args, kwargs):  # the router never picks expert 3
        idx = args[1].clone()
        idx[idx == 3] = 0
        return (args[0], idx, *args[2:]), kwargs

    experts.register_forward_pre_hook(never_expert_3, with_kwargs=True)
    dense3 = experts.down_proj[3].detach().clone()
    ids = torch.randint(4, 260, (4, 32), generator=torch.Generator().manual_seed(4))
    warnings: list[str] = []
    walk_model(model, "model.layers", ids, warnings=warnings)
    assert any(
        "model.layers.1.mlp.experts.down_proj[3]" in w and "magnitude" in w for w in warnings
    )
    assert not any("experts.down_proj[2]" in w for w in warnings)
    k = dense3.numel() // 2  # magnitude: one threshold over the matrix
    expected = dense3.abs() <= dense3.abs().flatten().kthvalue(k + 1).values
    assert torch.equal(experts.down_proj[3] == 0, expected)
