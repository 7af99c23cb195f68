"""DSnoT: counts per row (per group of M) unchanged, the expected output error of every row
never rises (and falls overall), no weight changes value but the swapped ones, end to end."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from service.methods import METHODS
from service.schemas import CalibrationSpec, PruneSpec
from tests.worker.engine.support import correlated_inputs, pattern, stats_from, zeros_per_group
from worker.engine.methods import get_method
from worker.engine.prune.dsnot import dsnot, expected_error
from worker.engine.run import run


def shifted_inputs(seed: int, cols: int = 64) -> torch.Tensor:
    """Correlated inputs with a non-zero mean per feature, (4, 64, cols)."""
    x = correlated_inputs(256, cols, seed)
    shift = torch.randn(cols, generator=torch.Generator().manual_seed(seed + 100))
    return (x + shift).reshape(4, 64, cols)


def one_shot(method: str, sparsity, seed: int):
    torch.manual_seed(seed)
    w = torch.randn(48, 64)
    stats = stats_from([shifted_inputs(seed)])
    result = get_method(method).fn([w], stats, pattern(sparsity), METHODS[method]())
    return w, result.weights[0], result.masks[0], stats


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("method", "sparsity"),
    [("wanda", 0.6), ("wanda", 0.7), ("wanda", "2:4"), ("sparsegpt", 0.6), ("magnitude", "4:8")],
)
def test_dsnot_keeps_counts_and_never_raises_a_rows_expected_error(method, sparsity, seed):
    w, w_pruned, mask, stats = one_shot(method, sparsity, seed)
    r = dsnot(w, w_pruned, mask, stats, pattern(sparsity))
    assert r.swaps > 0  # the refinement did something on these inputs
    assert torch.equal(r.pruned.sum(dim=1), mask.sum(dim=1))  # per row
    p = pattern(sparsity)
    if p.is_nm:
        assert torch.equal(zeros_per_group(r.weight, p.m), zeros_per_group(w_pruned, p.m))
        assert (zeros_per_group(r.weight, p.m) >= p.n).all()
    assert torch.equal(r.weight == 0, r.pruned)
    assert int((r.pruned != mask).sum()) == 2 * r.swaps
    # the expected error of each row's output, measured on the inputs themselves
    x = shifted_inputs(seed).reshape(-1, 64)
    before = ((w - w_pruned) @ x.mean(dim=0)).abs()
    after = ((w - r.weight) @ x.mean(dim=0)).abs()
    assert (after <= before + 1e-4 * before.abs().max()).all()
    assert after.sum() < 0.9 * before.sum()
    assert torch.allclose(expected_error(w, r.weight, stats.col_mean).abs(), after, atol=1e-3)
    # kept weights keep their values; regrown ones take the dense value; nothing else moves
    kept = ~mask & ~r.pruned
    assert torch.equal(r.weight[kept], w_pruned[kept])
    grown = mask & ~r.pruned
    assert torch.equal(r.weight[grown], w[grown])


def test_dsnot_stops_at_max_cycles_and_at_the_threshold():
    w, w_pruned, mask, stats = one_shot("wanda", 0.6, 0)
    one = dsnot(w, w_pruned, mask, stats, pattern(0.6), max_cycles=1)
    assert 0 < one.swaps <= w.shape[0]
    full = dsnot(w, w_pruned, mask, stats, pattern(0.6))
    assert full.swaps > one.swaps
    huge = dsnot(w, w_pruned, mask, stats, pattern(0.6), update_threshold=1e9)
    assert huge.swaps == 0 and torch.equal(huge.pruned, mask)


@pytest.mark.parametrize("sparsity", [0.6, "2:4"])
def test_dsnot_end_to_end_keeps_the_pattern_and_reports_swaps(
    tiny_model_dir, calib_file, tmp_path, sparsity
):
    from transformers import AutoModelForCausalLM

    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    model_dir = tiny_model_dir("llama")
    reports = {}
    for refine in ("none", "dsnot"):
        spec = PruneSpec(
            model=str(model_dir),
            method="wanda",
            sparsity=sparsity,
            calibration=cal,
            device="cpu",
            refine=refine,
        )
        reports[refine] = run(spec, tmp_path / refine)
    plain, refined = reports["none"], reports["dsnot"]
    assert all(m.dsnot_swaps is None for m in plain.modules)
    assert sum(m.dsnot_swaps for m in refined.modules) > 0
    for a, b in zip(plain.modules, refined.modules, strict=True):
        assert a.name == b.name and a.sparsity == b.sparsity  # unchanged by construction
    assert refined.nm_ok == plain.nm_ok
    before = AutoModelForCausalLM.from_pretrained(tmp_path / "none").state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "dsnot").state_dict()
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and all(".layers." in n and n.endswith("proj.weight") for n in changed)


def test_dsnot_settings_are_checked():
    base = {"model": "org/m", "sparsity": 0.5}
    with pytest.raises(ValidationError, match="refine: 'dsnot' works with the one-shot"):
        PruneSpec(**base, method="smp", refine="dsnot")
    with pytest.raises(ValidationError, match="dsnot: these settings are for refine 'dsnot'"):
        PruneSpec(**base, method="wanda", dsnot={"max_cycles": 5})
    with pytest.raises(ValidationError, match="unknown refine 'dsnt'; allowed: none, dsnot"):
        PruneSpec(**base, method="wanda", refine="dsnt")
    with pytest.raises(ValidationError, match="max_cycles"):
        PruneSpec(**base, method="wanda", refine="dsnot", dsnot={"max_cycles": 0})
    assert PruneSpec(**base, method="magnitude", refine="dsnot").dsnot.max_cycles == 50
