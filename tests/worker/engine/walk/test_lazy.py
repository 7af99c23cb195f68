"""Lazy loading (one decoder layer at a time from the checkpoint, each pruned layer written as
its own shard): the checkpoint equals the eager path's tensor for tensor, tied and untied,
sharded input or not; no more than one layer is ever materialized; what cannot stream says
so (forced) or loads eagerly (auto)."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

import worker.engine.stages.load as load_stage
from service.schemas import CalibrationSpec, EvalSpec, PruneSpec, TrainingSpec
from tests.support.tiny_models import make_tiny_model
from tests.worker.engine.support import saved_tensors
from worker.engine.data import calibration
from worker.engine.errors import UnsupportedModelError
from worker.engine.evaluation.evaluate import perplexity
from worker.engine.model.model_io import decoder_layers, get_weight, load_model
from worker.engine.progress import Reporter
from worker.engine.run import run
from worker.engine.walk.lazy import INDEX, LazyWeights, checkpoint_bytes, open_lazy
from worker.engine.walk.streaming import LayerStreamer
from worker.engine.walk.walker import walk


def spec_for(model_dir, calib_file, load, method="wanda", sparsity="2:4", **kw) -> PruneSpec:
    return PruneSpec(
        model=str(model_dir),
        method=method,
        sparsity=sparsity,
        device="cpu",
        load=load,
        calibration=CalibrationSpec(dataset=str(calib_file), nsamples=4, seqlen=32),
        evaluation=EvalSpec(dataset=str(calib_file), seqlen=32, max_windows=3),
        **kw,
    )


def both(model_dir, calib_file, tmp_path, **kw):
    reports = {}
    for load in ("eager", "lazy"):
        reports[load] = run(spec_for(model_dir, calib_file, load, **kw), tmp_path / load)
    return reports


@pytest.mark.parametrize(
    "arch,method,sparsity",
    [
        ("llama", "wanda", "2:4"),
        ("llama_tied", "sparsegpt", "0.5"),
        ("gpt2", "sparsegpt", "2:4"),
        ("opt", "magnitude", "4:8"),
        ("gemma2", "wanda", "0.5"),
    ],
)
def test_lazy_checkpoint_equals_eager(tiny_model_dir, calib_file, tmp_path, arch, method, sparsity):
    reports = both(tiny_model_dir(arch), calib_file, tmp_path, method=method, sparsity=sparsity)
    eager, lazy = saved_tensors(tmp_path / "eager"), saved_tensors(tmp_path / "lazy")
    assert eager.keys() == lazy.keys()
    for name, t in eager.items():
        assert torch.equal(t, lazy[name]), name
    index = json.loads((tmp_path / "lazy" / INDEX).read_text())
    assert set(index["weight_map"]) == set(lazy)
    assert len(set(index["weight_map"].values())) == reports["lazy"].n_layers + 1  # a shard each
    r_e, r_l = reports["eager"], reports["lazy"]
    assert r_e.load.startswith("eager") and r_l.load.startswith("lazy")
    assert r_l.perplexity.dense == r_e.perplexity.dense
    assert r_l.perplexity.pruned == r_e.perplexity.pruned != r_l.perplexity.dense
    assert [m.model_dump() for m in r_l.modules] == [m.model_dump() for m in r_e.modules]
    assert r_l.decoder_sparsity == r_e.decoder_sparsity and r_l.sparsity == r_e.sparsity
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "lazy")
    for name, t in again.state_dict().items():
        ref = eager.get(name)
        if ref is not None:
            assert torch.equal(t, ref), name
    if arch == "llama_tied":
        assert "lm_head.weight" not in lazy
        assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()


def test_sharded_input_streams(calib_file, tmp_path):
    src = make_tiny_model("llama4", tmp_path / "sharded", max_shard_size="100KB")
    assert (src / INDEX).is_file() and len(list(src.glob("*.safetensors"))) > 2
    both(src, calib_file, tmp_path, method="sparsegpt", sparsity="2:4")
    eager, lazy = saved_tensors(tmp_path / "eager"), saved_tensors(tmp_path / "lazy")
    assert eager.keys() == lazy.keys()
    assert all(torch.equal(t, lazy[n]) for n, t in eager.items())


def test_one_layer_materialized_at_a_time(tiny_model_dir, calib_file, tmp_path):
    """Walk and evaluation, with a count of the decoder layers holding real tensors at each
    layer call; the shell (embeddings, norm, head) is real only while a stage runs it."""
    src = tiny_model_dir("llama4")
    model, weights = open_lazy(src, torch.float32, decoder_layers, tmp_path / "out")
    layers = weights.layers
    seen, shell_real = [], []
    embed = lambda: model.get_input_embeddings().weight  # noqa: E731

    def count(module, args, output):  # after the layer ran, before the streamer unloads it
        real = [any(not p.is_meta for p in layer.parameters()) for layer in layers]
        seen.append(sum(real))
        shell_real.append(not embed().is_meta)

    for layer in layers:
        layer.register_forward_hook(count)
    assert all(p.is_meta for p in layers.parameters())  # nothing of the layers loaded yet
    streamer = LayerStreamer(model, layers, torch.device("cpu"), weights)
    _, tok = load_model(src)
    ids = calibration.eval_ids(tok, calib_file)
    ppl, _ = perplexity(streamer, ids, 32, 2)
    eager_model, _ = load_model(src)
    eager_ppl, _ = perplexity(
        LayerStreamer(eager_model, decoder_layers(eager_model)[1], torch.device("cpu")), ids, 32, 2
    )
    assert ppl == pytest.approx(eager_ppl, rel=1e-6)
    assert shell_real and all(shell_real)  # evaluation ran the shell
    assert all(p.is_meta for p in model.parameters())  # and nothing stayed after it
    shell_real.clear()
    targets = [
        {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
        for layer in layers
    ]

    def zero(names, ws, stats):
        shell_real.append(not embed().is_meta)
        return [torch.zeros_like(w) for w in ws]

    walk(streamer, None, None, targets, zero, Reporter())
    assert seen and max(seen) == 1 and weights.max_live == 1
    assert shell_real and not any(shell_real)  # the walk holds decoder layers only
    assert weights.committed == set(range(len(layers)))
    written = saved_tensors(tmp_path / "out")
    assert all(
        int(written[f"model.layers.{i}.mlp.up_proj.weight"].count_nonzero()) == 0
        for i in range(len(layers))
    )


def test_lazy_refuses_training(tiny_model_dir, calib_file):
    with pytest.raises(ValidationError, match="load: 'lazy'.*trains the whole model"):
        spec_for(tiny_model_dir("llama"), calib_file, "lazy", recovery=TrainingSpec(steps=2))


def test_forced_lazy_on_a_renamed_checkpoint_is_a_clear_error(tiny_model_dir, calib_file, tmp_path):
    # GPT-NeoX checkpoints name the head embed_out; transformers renames it while loading
    with pytest.raises(UnsupportedModelError, match="load 'lazy'.*lm_head.weight.*use load"):
        run(spec_for(tiny_model_dir("gpt_neox"), calib_file, "lazy"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_auto_chooses_by_size_and_falls_back(tiny_model_dir, calib_file, tmp_path, monkeypatch):
    src = tiny_model_dir("llama")
    weights = saved_tensors(src).values()
    assert checkpoint_bytes(src, torch.float32) == sum(t.numel() * 4 for t in weights)
    report = run(spec_for(src, calib_file, "auto"), tmp_path / "small")
    assert report.load.startswith("eager (weights")
    monkeypatch.setattr(load_stage, "LAZY_SHARE", 0.0)  # as if the host had no memory to spare
    report = run(spec_for(src, calib_file, "auto"), tmp_path / "big")
    assert report.load.startswith("lazy (weights") and (tmp_path / "big" / INDEX).is_file()
    report = run(spec_for(tiny_model_dir("gpt_neox"), calib_file, "auto"), tmp_path / "neox")
    assert report.load == "eager" and any("cannot be streamed" in w for w in report.warnings)


def test_masks_checked_per_layer_before_the_layer_leaves(tiny_model_dir, calib_file, tmp_path):
    """A pruned weight that is not zero when its layer is written fails the job."""
    src = tiny_model_dir("llama")
    real_commit = LazyWeights.commit

    def leaky(self, i):
        layer = self.layers[i]
        w = get_weight(layer.self_attn.q_proj)
        w[w == 0] = 1.0  # undo the pruning of one module
        real_commit(self, i)

    import worker.engine.walk.lazy as lazy_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lazy_module.LazyWeights, "commit", leaky)
        with pytest.raises(Exception, match="q_proj: .* weights the mask prunes are not zero"):
            run(spec_for(src, calib_file, "lazy"), tmp_path / "out")


def test_a_capture_reads_only_its_tokens_rows_of_the_embedding(tiny_model_dir, tmp_path):
    src = tiny_model_dir("llama_tied")
    model, weights = open_lazy(src, torch.float32, decoder_layers, tmp_path / "out")
    ref = load_model(src)[0].get_input_embeddings().weight
    cpu = torch.device("cpu")
    weights.load_shell(cpu, torch.tensor([[5, 3, 3, 9], [10, 11, 12, 5]]))
    rows = [3, 5, 9, 10, 11, 12]
    assert torch.equal(model.get_input_embeddings().weight[rows], ref[rows])
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    with pytest.raises(RuntimeError, match="another use"):
        weights.load_shell(cpu)  # a full forward cannot run on a capture's partial table
    weights.release_shell()
    assert all(p.is_meta for p in model.parameters())
    weights.load_shell(cpu)
    assert torch.equal(model.get_input_embeddings().weight, ref)
    weights.release_shell()
