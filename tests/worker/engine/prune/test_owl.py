"""OWL: outlier ratios, the per-layer allocation (mean at the target, every layer in the band,
more outliers -> lower sparsity), the masks at each layer's sparsity, and what is refused."""

from __future__ import annotations

import random

import pytest
import torch
from pydantic import ValidationError

from service.schemas import CalibrationSpec, PruneSpec
from tests.worker.engine.support import correlated_inputs, stats_from
from worker.engine.prune.owl import OWLAllocator, outlier_ratio, owl_sparsities
from worker.engine.run import run


def test_outlier_ratio_counts_scores_above_m_times_the_layer_mean():
    torch.manual_seed(0)
    x = correlated_inputs(64, 16).reshape(4, 16, 16)
    stats = stats_from([x], want_hessian=False)
    w1, w2 = torch.randn(8, 16), torch.randn(4, 16)
    norms = torch.sqrt(stats.col_norm_sq)
    scores = torch.cat([(w1.abs() * norms).reshape(-1), (w2.abs() * norms).reshape(-1)])
    for m in (1.5, 3.0, 5.0):
        by_hand = sum(1 for v in scores.tolist() if v > m * scores.mean().item()) / len(scores)
        assert outlier_ratio([w1, w2], [stats, stats], m) == pytest.approx(by_hand)
    assert 0 < outlier_ratio([w1, w2], [stats, stats], 1.5) < 1


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("target", "lam"), [(0.5, 0.08), (0.7, 0.08), (0.6, 0.2)])
def test_allocation_mean_is_the_target_and_every_layer_is_in_the_band(seed, target, lam):
    rng = random.Random(seed)
    n = rng.randint(3, 40)
    sizes = [rng.choice([1000, 5000, 20000]) for _ in range(n)]
    ratios = [rng.random() ** 3 * 0.1 for _ in range(n)]  # skewed, as outlier ratios are
    given = owl_sparsities(ratios, sizes, target, lam)
    mean = sum(g * s for g, s in zip(given, sizes, strict=True)) / sum(sizes)
    assert mean == pytest.approx(target, abs=1e-6)
    assert all(target - lam - 1e-9 <= g <= target + lam + 1e-9 for g in given)
    # linear in the ratio where not clipped: more outliers, never a higher sparsity
    order = sorted(range(n), key=lambda i: ratios[i])
    assert all(given[a] >= given[b] - 1e-12 for a, b in zip(order, order[1:], strict=False))
    assert max(given) - min(given) > lam / 2  # the ratios did change the allocation
    # the allocator hands the plan out unchanged when the masks prune exactly what it asks
    alloc = OWLAllocator(target, lam, sizes, ratios)
    for i in range(n):
        assert alloc.allocate(i) == pytest.approx(given[i])
        alloc.achieved(i, given[i] * sizes[i])
    assert alloc.mean() == pytest.approx(target, abs=1e-6)


def test_the_outlier_heavy_layer_gets_the_lower_sparsity():
    ratios = [0.01, 0.012, 0.09, 0.011, 0.010, 0.013]  # layer 2 is full of outliers
    given = owl_sparsities(ratios, [1000] * 6, 0.7, 0.08)
    assert given[2] == min(given) and given[2] == pytest.approx(0.7 - 0.08)
    assert all(g > 0.7 for i, g in enumerate(given) if i != 2)
    assert owl_sparsities([0.02] * 4, [10] * 4, 0.6, 0.1) == [0.6] * 4  # no spread: uniform


def test_rounding_per_row_is_made_up_by_the_later_layers():
    alloc = OWLAllocator(0.5, 0.1, [100, 100], [0.02, 0.02])
    assert alloc.allocate(0) == pytest.approx(0.5)
    alloc.achieved(0, 45)  # asked for 50, the masks pruned 45
    assert alloc.allocate(1) == pytest.approx(0.55)


@pytest.fixture(scope="module")
def owl_runs(tiny_model_dir, calib_file, tmp_path_factory):
    """Wanda at 60% on a 4-layer llama, uniform and OWL, with the checkpoints' weights."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("owl")
    model_dir = tiny_model_dir("llama4")
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    out = {}
    for profile in ("uniform", "owl"):
        spec = PruneSpec(
            model=str(model_dir),
            method="wanda",
            sparsity=0.6,
            calibration=cal,
            device="cpu",
            sparsity_profile=profile,
            owl={"m": 2.0, "lam": 0.1} if profile == "owl" else None,
        )
        report = run(spec, root / profile)
        model = AutoModelForCausalLM.from_pretrained(root / profile)
        out[profile] = (report, model)
    return out


def test_owl_masks_have_each_layers_sparsity_and_the_report_lists_them(owl_runs):
    report, model = owl_runs["owl"]
    assert [x.index for x in report.layers] == list(range(4))
    given = [x.sparsity for x in report.layers]
    assert len({round(g, 4) for g in given}) > 1 and all(0.5 - 1e-9 <= g <= 0.7 for g in given)
    weights = dict(model.named_parameters())
    for layer in report.layers:
        mods = [m for m in report.modules if m.name.startswith(f"model.layers.{layer.index}.")]
        assert len(mods) == 7
        zeros = sum(int((weights[m.name + ".weight"] == 0).sum()) for m in mods)
        size = sum(m.shape[0] * m.shape[1] for m in mods)
        assert layer.params == size
        assert zeros / size == pytest.approx(layer.achieved, abs=1e-6)
        for m in mods:  # each row prunes floor(in x sparsity) weights
            w = weights[m.name + ".weight"]
            per_row = (w == 0).sum(dim=1)
            assert (per_row == int(w.shape[1] * layer.sparsity)).all(), m.name
    assert report.sparsity == pytest.approx(0.6, abs=2 / 64)
    assert not owl_runs["uniform"][0].layers  # uniform lists no layer profile


def test_owl_with_n_m_or_a_training_method_or_a_band_outside_0_1_is_refused():
    base = {"model": "org/m", "method": "wanda", "sparsity_profile": "owl"}
    with pytest.raises(ValidationError, match="N:M .2:4. stays uniform"):
        PruneSpec(**base, sparsity="2:4")
    with pytest.raises(ValidationError, match="works with the one-shot methods"):
        PruneSpec(**{**base, "method": "smp"}, sparsity=0.5)
    with pytest.raises(ValidationError, match="owl.lam: layer sparsities 0.95"):
        PruneSpec(**base, sparsity=0.95)
    with pytest.raises(ValidationError, match="owl: these settings are for sparsity_profile"):
        PruneSpec(model="org/m", method="wanda", sparsity=0.5, owl={"m": 5})
    with pytest.raises(ValidationError, match="unknown sparsity_profile 'owl2'"):
        PruneSpec(model="org/m", method="wanda", sparsity=0.5, sparsity_profile="owl2")
    assert PruneSpec(**base, sparsity=0.7).owl.lam == 0.08  # the paper's defaults


def test_the_survey_sees_the_dense_models_own_inputs_of_every_layer(tiny_model_dir):
    """survey() feeds each layer the dense outputs of the one before: its statistics equal
    the column norms of the inputs the untouched model's own forward gives each Linear."""
    from transformers import AutoModelForCausalLM

    from worker.engine.progress import Reporter
    from worker.engine.run import layer_targets
    from worker.engine.walk.streaming import LayerStreamer
    from worker.engine.walk.walker import survey

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir("llama4"), attn_implementation="eager"
    )
    layers = model.model.layers
    ids = torch.randint(4, 200, (3, 16), generator=torch.Generator().manual_seed(0))
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: seen.setdefault(n, a[0].detach()))
        for n, m in model.named_modules()
        if n.endswith(("q_proj", "down_proj"))
    ]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    got: dict[str, torch.Tensor] = {}

    def visit(i, groups):
        for names, _, stats in groups:
            for n in names:
                got[n] = stats.col_norm_sq

    targets = [layer_targets(layer, f"model.layers.{i}") for i, layer in enumerate(layers)]
    survey(LayerStreamer(model, layers, torch.device("cpu")), ids, targets, visit, Reporter())
    for name, x in seen.items():
        want = x.float().square().sum(dim=(0, 1)) / 3  # mean over the 3 sequences
        assert torch.allclose(got[name], want, rtol=1e-4, atol=1e-6), name
    assert len(seen) == 8
