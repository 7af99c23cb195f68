"""What a run leaves beside the weights for people: a Hugging Face model card whose metadata
the hub's own parser reads, greedy sample generations per stage, and PNG plots."""

from __future__ import annotations

import shutil

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from pydantic import ValidationError

from service.schemas import MAX_PROMPTS, CalibrationSpec, EvalSpec, PruneReport, PruneSpec
from service.schemas import REPORT_FILE as REPORT_NAME
from worker.engine.run import run

PNG = b"\x89PNG\r\n\x1a\n"


def spec(model_dir, calib_file, sparsity="2:4", **kw) -> PruneSpec:
    cal = CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32)
    return PruneSpec(
        model=str(model_dir), method="wanda", sparsity=sparsity, calibration=cal, device="cpu", **kw
    )


@pytest.fixture(scope="module")
def licensed_model(tiny_model_dir, tmp_path_factory):
    """The tiny llama with a card of its own that names a license."""
    out = tmp_path_factory.mktemp("src") / "tiny-llama"
    shutil.copytree(tiny_model_dir("llama"), out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\nlanguage: en\n---\n# tiny\n")
    return out


@pytest.fixture(scope="module")
def trained(licensed_model, calib_file, tmp_path_factory):
    """Wanda 2:4 (OWL off) with recovery and evaluation, two prompts of 5 tokens."""
    from service.schemas import TrainingSpec

    rec = TrainingSpec(dataset=str(calib_file), steps=3, seqlen=32, batch_size=2)
    ev = EvalSpec(
        dataset=str(calib_file),
        seqlen=32,
        max_windows=2,
        sample_tokens=5,
        prompts=["the model", "a sparse weight"],
    )
    out = tmp_path_factory.mktemp("run") / "out"
    report = run(spec(licensed_model, calib_file, evaluation=ev, recovery=rec), out)
    return report, out


def test_the_card_parses_with_the_hub_parser(trained):
    report, out = trained
    meta = metadata_load(out / "README.md")
    assert meta["base_model"] == "tiny-llama"
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "apache-2.0"
    assert {"pruned", "sparse", "2:4", "wanda"} <= set(meta["tags"])
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0"
    text = card.text
    ppl = report.perplexity
    expected = {
        "dense (before pruning)": ppl.dense,
        "after pruning": ppl.after["prune"],
        "after recovery": ppl.after["recover"],
    }
    for stage, value in expected.items():
        assert f"| {stage} | {value:.3f} |" in text, text
    assert f"| sparsity over the pruned modules | {report.sparsity:.2%} |" in text
    assert f"| sparsity over all decoder weights | {report.decoder_sparsity:.2%} |" in text
    assert "every pruned matrix satisfies it" in text
    assert "recover: " in text and "steps x 2 x 32 tokens" in text
    assert '"method": "wanda"' in text and "AutoModelForCausalLM.from_pretrained" in text
    assert f"pruneserve {report.versions['pruneserve']}" in text


def test_samples_per_weight_changing_stage(trained):
    report, out = trained
    s = report.samples
    assert s.prompts == ["the model", "a sparse weight"] and s.tokens == 5
    assert list(s.after) == ["dense", "prune", "recover"]
    assert all(len(texts) == 2 and all(t for t in texts) for texts in s.after.values())
    saved = PruneReport.model_validate_json((out / REPORT_NAME).read_text())
    assert saved.samples == s
    text = (out / "README.md").read_text()
    assert "**a sparse weight**" in text and s.after["recover"][1].strip() in text


def test_plots_are_pngs(trained):
    _, out = trained
    for name in ("training_loss", "perplexity"):
        data = (out / f"plot_{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    assert not (out / "plot_layer_sparsity.png").exists()  # uniform: nothing to plot


def test_owl_layer_plot_and_a_card_without_evaluation(tiny_model_dir, calib_file, tmp_path):
    run(spec(tiny_model_dir("llama"), calib_file, 0.5, sparsity_profile="owl"), tmp_path / "o")
    assert (tmp_path / "o" / "plot_layer_sparsity.png").read_bytes().startswith(PNG)
    meta = metadata_load(tmp_path / "o" / "README.md")
    assert "license" not in meta and {"unstructured", "owl"} <= set(meta["tags"])
    assert "Not evaluated" in (tmp_path / "o" / "README.md").read_text()


@pytest.mark.parametrize(
    ("prompts", "tokens", "loc", "message"),
    [
        (["p"] * (MAX_PROMPTS + 1), 8, ("prompts",), f"at most {MAX_PROMPTS} items"),
        (["x" * 501], 8, ("prompts", 0), "at most 500 characters"),
        ([""], 8, ("prompts", 0), "at least 1 character"),
        (["p"], 129, ("sample_tokens",), "less than or equal to 128"),
    ],
)
def test_prompts_are_bounded(prompts, tokens, loc, message):
    with pytest.raises(ValidationError) as exc:
        EvalSpec(prompts=prompts, sample_tokens=tokens)
    assert exc.value.errors()[0]["loc"] == loc and message in str(exc.value)


def test_lazy_loading_generates_the_same_samples(tiny_model_dir, calib_file, tmp_path):
    """The lazy walk drops the tokenizer and streams the layers; its samples are the eager ones."""
    ev = EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=1, sample_tokens=4)
    reports = [
        run(spec(tiny_model_dir("llama"), calib_file, evaluation=ev, load=load), tmp_path / load)
        for load in ("eager", "lazy")
    ]
    assert reports[1].load.startswith("lazy")
    assert reports[0].samples == reports[1].samples
    assert len(reports[1].samples.after["prune"]) == len(ev.prompts) == 3


def test_reconstruction_loss_is_drawn_when_the_report_has_it(tmp_path):
    """Block-wise reconstruction reports per-block losses; the plot reads them by name."""
    from worker.engine.publish.plots import draw

    class WithReconstruction(PruneReport):
        reconstruction: list[dict]

    blocks = [
        {"block": i, "loss_before": 1.0 / (i + 1), "loss_after": 0.5 / (i + 1)} for i in range(4)
    ]
    rep = WithReconstruction(
        spec=PruneSpec(model="m", method="wanda", sparsity="2:4"), reconstruction=blocks
    )
    assert draw(rep, tmp_path) == ["plot_reconstruction_loss.png"]
    assert (tmp_path / "plot_reconstruction_loss.png").read_bytes().startswith(PNG)
    assert draw(PruneReport(spec=rep.spec), tmp_path / "none") == []
