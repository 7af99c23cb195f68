"""run(spec) end to end on tiny models of every architecture: every Linear in the decoder
layers reaches the target, the rest stays dense, the model generates, the checkpoint reloads
identical, and the report says what happened. Bad inputs fail with clear errors.
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

import worker.engine.stages.save as save_stage
from service.schemas import REPORT_FILE as REPORT_NAME
from service.schemas import CalibrationSpec, EvalSpec, PruneSpec
from tests.worker.engine.support import ARCHS, LAYERS_PATH, layers_of, linear_weights
from worker.engine.errors import CalibrationError, ModelLoadError, SpecError
from worker.engine.methods import METHODS, get_method
from worker.engine.progress import Reporter
from worker.engine.run import run


def spec_for(model_dir, calib_file, method="wanda", sparsity="2:4", **kw) -> PruneSpec:
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    return PruneSpec(
        model=str(model_dir), method=method, sparsity=sparsity, calibration=cal, device="cpu", **kw
    )


@pytest.fixture
def pruned_models(monkeypatch):
    """The in-memory model of every run() in the test, caught as it is saved."""
    models = []
    real_save = save_stage.save_model

    def save(model, tokenizer, directory):
        models.append(model)
        real_save(model, tokenizer, directory)

    monkeypatch.setattr(save_stage, "save_model", save)
    return models


def dense_outside_layers(model, arch) -> dict[str, torch.Tensor]:
    inside = LAYERS_PATH[arch] + "."
    return {n: p.detach() for n, p in model.state_dict().items() if not n.startswith(inside)}


def check_pruned(arch, model_dir, out, model, sparsity: str, skip=()):
    dense = AutoModelForCausalLM.from_pretrained(model_dir)
    prefix = LAYERS_PATH[arch]
    pruned_w = linear_weights(layers_of(model, arch), prefix)
    dense_w = linear_weights(layers_of(dense, arch), prefix)
    assert pruned_w.keys() == dense_w.keys() and len(pruned_w) >= 8
    for name, w in pruned_w.items():
        if any(s in name for s in skip):
            assert torch.equal(w, dense_w[name]), name
        elif ":" in sparsity:
            n, m = map(int, sparsity.split(":"))
            zeros = (w == 0).reshape(w.shape[0], -1, m).sum(dim=2)
            assert (zeros >= n).all(), name
            assert abs((w == 0).float().mean().item() - n / m) < 0.01, name
        else:
            assert float(sparsity) <= (w == 0).float().mean().item() < float(sparsity) + 0.02, name
    # embeddings, positions, final norm and lm_head stay exactly as they were
    dense_rest = dense_outside_layers(dense, arch)
    assert any("embed" in n or "wte" in n for n in dense_rest) and "lm_head.weight" in dense_rest
    for name, t in dense_outside_layers(model, arch).items():
        assert torch.equal(t, dense_rest[name]), name
    # non-Linear parameters inside the layers (norms, biases) are untouched too
    dense_sd = dense.state_dict()
    for name, t in model.state_dict().items():
        if name.startswith(prefix) and name.endswith(("norm.weight", ".bias")):
            assert torch.equal(t, dense_sd[name]), name
    # the checkpoint on disk is the in-memory model
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    reloaded_sd = reloaded.state_dict()
    assert reloaded_sd.keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        assert torch.equal(reloaded_sd[name], t), name
    assert list(out.glob("*.safetensors")) and (out / "tokenizer.json").is_file()
    # and it still generates
    ids = torch.tensor([[1, 40, 50, 60, 70]])
    gen = reloaded.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=4,
        min_new_tokens=4,
        do_sample=False,
        pad_token_id=3,
    )
    assert gen.shape == (1, 9) and torch.equal(gen[:, :5], ids)
    return pruned_w


def check_report(out, report, arch, n_modules, method):
    saved = json.loads((out / REPORT_NAME).read_text())
    assert saved["architecture"] == report.architecture == type_name(arch)
    assert saved["n_layers"] == 2
    assert len(saved["modules"]) == n_modules
    assert all(m["name"].startswith(LAYERS_PATH[arch] + ".") for m in saved["modules"])
    assert {"torch", "transformers", "python", "safetensors"} <= saved["versions"].keys()
    stages = {"load", "prune", "save"} | (
        {"calibrate"} if METHODS[method]().calibrates() else set()
    )
    assert stages <= saved["stages_s"].keys()
    assert saved["peak_rss_mb"] > 0
    assert saved["spec"]["method"] == method


def type_name(arch):
    return {
        "llama": "LlamaForCausalLM",
        "mistral": "MistralForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "gemma": "GemmaForCausalLM",
        "gemma2": "Gemma2ForCausalLM",
        "phi3": "Phi3ForCausalLM",
        "gpt2": "GPT2LMHeadModel",
        "gpt_neox": "GPTNeoXForCausalLM",
        "opt": "OPTForCausalLM",
    }[arch]


CASES = [(arch, "wanda", "2:4") for arch in ARCHS] + [
    ("llama", "sparsegpt", "0.5"),
    ("gpt2", "sparsegpt", "2:4"),
    ("phi3", "sparsegpt", "0.5"),
    ("opt", "magnitude", "0.5"),
    ("qwen2", "wanda", "0.5"),
]


@pytest.mark.parametrize(("arch", "method", "sparsity"), CASES)
def test_prunes_every_architecture(
    tiny_model_dir, calib_file, tmp_path, pruned_models, arch, method, sparsity
):
    model_dir = tiny_model_dir(arch)
    out = tmp_path / "out"
    report = run(spec_for(model_dir, calib_file, method, sparsity), out)
    [model] = pruned_models
    pruned_w = check_pruned(arch, model_dir, out, model, sparsity)
    check_report(out, report, arch, len(pruned_w), method)
    by_name = {m.name: m for m in report.modules}
    assert by_name.keys() == pruned_w.keys()
    for name, w in pruned_w.items():
        assert by_name[name].shape == tuple(w.shape)
        assert by_name[name].sparsity == pytest.approx((w == 0).float().mean().item())
    if ":" in sparsity:
        assert report.nm_ok is True and all(m.nm_ok for m in report.modules)
    if method != "magnitude":
        assert all(0 < m.rel_error < 1 for m in report.modules)
    assert not out.with_name("out.partial").exists()


def test_skip_keeps_matching_modules_dense(tiny_model_dir, calib_file, tmp_path, pruned_models):
    model_dir = tiny_model_dir("llama")
    out = tmp_path / "out"
    spec = spec_for(model_dir, calib_file, skip=["*.mlp.down_proj", "model.layers.0.self_attn.*"])
    report = run(spec, out)
    skipped = ["mlp.down_proj", "layers.0.self_attn."]
    check_pruned("llama", model_dir, out, pruned_models[0], "2:4", skip=skipped)
    names = [m.name for m in report.modules]
    assert len(names) == 14 - 2 - 4 and not any(s in n for n in names for s in skipped)


def test_bfloat16_model(tiny_model_dir, calib_file, tmp_path, pruned_models):
    out = tmp_path / "out"
    report = run(
        spec_for(tiny_model_dir("gemma"), calib_file, "sparsegpt", "4:8", dtype="bfloat16"), out
    )
    assert report.dtype == "bfloat16" and report.nm_ok is True
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    for name, t in pruned_models[0].state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], t), name


def test_evaluation_reports_dense_and_pruned_perplexity(tiny_model_dir, calib_file, tmp_path):
    ev = EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=3)
    spec = spec_for(tiny_model_dir("llama"), calib_file, "magnitude", "0.5", evaluation=ev)
    report = run(spec, tmp_path / "out")
    ppl = report.perplexity
    assert ppl.windows == 3 and ppl.seqlen == 32
    assert ppl.dense > 1 and ppl.pruned > 1 and ppl.dense != ppl.pruned
    assert {"eval_dense", "eval_pruned"} <= report.stages_s.keys()


def test_raised_damping_is_reported(tiny_model_dir, calib_file, tmp_path, monkeypatch):
    sgpt = importlib.import_module("worker.engine.methods.sparsegpt.prune")
    real = sgpt.inverse_cholesky
    # as if every Cholesky had failed once at the default damping
    monkeypatch.setattr(sgpt, "inverse_cholesky", lambda H, p: real(H, p * 10))
    report = run(spec_for(tiny_model_dir("gpt2"), calib_file, "sparsegpt", "2:4"), tmp_path / "o")
    assert all(m.damping == pytest.approx(0.1) for m in report.modules)
    assert len(report.warnings) == len(report.modules) and "damping" in report.warnings[0]


# --- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("method", "pruneall", "unknown method 'pruneall'; allowed: magnitude, wanda, sparsegpt"),
        ("sparsity", 1.2, 'allowed: a fraction in (0, 1) such as 0.5, or "N:M"'),
        ("sparsity", 0, "out of range"),
        ("sparsity", "3:2", "need 0 < N < M"),
        ("sparsity", "0:4", "need 0 < N < M"),
        ("sparsity", "2:5", "M must be a power of two from 2 to 32"),
        ("sparsity", "half", "'half' is not valid"),
        ("device", "tpu", "allowed: "),
    ],
)
def test_bad_spec_is_refused_with_what_is_allowed(field, value, message):
    fields = {"model": "m", "method": "wanda", "sparsity": "2:4", field: value}
    with pytest.raises(ValidationError) as exc:
        PruneSpec(**fields)
    assert message in str(exc.value)
    assert exc.value.errors()[0]["loc"] == (field,)


def test_unknown_method_in_the_engine_registry():
    with pytest.raises(SpecError, match="allowed: magnitude, wanda, sparsegpt"):
        get_method("obs")


def test_output_that_exists_is_refused(tiny_model_dir, calib_file, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(SpecError, match="already exists"):
        run(spec_for(tiny_model_dir("llama"), calib_file), tmp_path / "out")


def test_missing_calibration_file(tiny_model_dir, tmp_path):
    missing = tmp_path / "missing.txt"
    with pytest.raises(CalibrationError, match=str(missing)):
        run(spec_for(tiny_model_dir("llama"), missing), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_text_too_short_for_seqlen(tiny_model_dir, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short for 32 tokens")
    with pytest.raises(CalibrationError, match="seqlen 32 needs at least 33"):
        run(spec_for(tiny_model_dir("llama"), short), tmp_path / "out")


def test_missing_model_directory(calib_file, tmp_path):
    with pytest.raises(ModelLoadError, match="neither a local directory nor a hub id"):
        run(spec_for(tmp_path / "no" / "model", calib_file), tmp_path / "out")


def test_cuda_asked_without_cuda(tiny_model_dir, calib_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = spec_for(tiny_model_dir("llama"), calib_file).model_copy(update={"device": "cuda"})
    with pytest.raises(SpecError, match="CUDA is not available"):
        run(spec, tmp_path / "out")


class Recorder(Reporter):
    """Every stage start (name, steps, span) and warning, in order."""

    def __init__(self):
        self.events = []

    def stage(self, name, total=0, span=(0.0, 100.0)):
        self.events.append(("stage", name, total, span))

    def warn(self, message):
        self.events.append(("warn", message))


@pytest.mark.parametrize(
    ("sparsity", "message"),
    [("1:32", "down_proj has 48 inputs"), (1e-300, "prunes no weight")],
)
def test_patterns_that_cannot_fit_are_refused_before_any_work(
    tiny_model_dir, calib_file, tmp_path, sparsity, message
):
    rec = Recorder()
    with pytest.raises(SpecError, match=message):
        run(
            spec_for(tiny_model_dir("llama_mlp48"), calib_file, "wanda", sparsity),
            tmp_path / "o",
            reporter=rec,
        )
    assert [e[1] for e in rec.events] == ["load"]  # not calibrated, not walked
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_a_skip_pattern_that_matches_nothing_names_real_modules(
    tiny_model_dir, calib_file, tmp_path
):
    spec = spec_for(tiny_model_dir("llama"), calib_file, skip=["*.mlp.down_proj", "mlp"])
    with pytest.raises(SpecError, match=r"'mlp' match no prunable module.*model\.layers\.0\."):
        run(spec, tmp_path / "o")


def test_progress_spans_come_from_the_plan_and_warnings_arrive_during_prune(
    tiny_model_dir, calib_file, tmp_path, monkeypatch
):
    sgpt = importlib.import_module("worker.engine.methods.sparsegpt.prune")
    real = sgpt.inverse_cholesky
    monkeypatch.setattr(sgpt, "inverse_cholesky", lambda H, p: real(H, p * 10))
    ev = EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=1)
    spec = spec_for(tiny_model_dir("llama"), calib_file, "sparsegpt", "2:4", evaluation=ev)
    rec = Recorder()
    run(spec, tmp_path / "o", reporter=rec)
    stages = [e for e in rec.events if e[0] == "stage"]
    names = [e[1] for e in stages]
    assert names == ["load", "calibrate", "eval_dense", "prune", "eval_pruned", "save"]
    spans = [e[3] for e in stages]
    assert spans[0][0] == 0 and spans[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert stages[3][2] == 2  # prune counts layers
    kinds = [e[0] if e[0] == "warn" else e[1] for e in rec.events]
    first_warn = kinds.index("warn")
    assert kinds.index("prune") < first_warn < kinds.index("eval_pruned")


@pytest.mark.parametrize(
    ("part", "method"),  # magnitude reads no calibration data
    [("calibration", "wanda"), ("evaluation", "magnitude"), ("recovery", "magnitude")],
)
def test_a_missing_corpus_names_the_spec_field_it_came_from(tiny_model_dir, tmp_path, part, method):
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")), method=method, sparsity=0.5, device="cpu", **{part: {}}
    )
    with pytest.raises(CalibrationError) as exc:
        run(spec, tmp_path / "out", data_dir=tmp_path)
    message = str(exc.value)
    assert message.startswith(f"{part}.dataset: dataset 'wikitext2': "), message
    assert "wikitext-2-raw/" in message and not (tmp_path / "out").exists()
