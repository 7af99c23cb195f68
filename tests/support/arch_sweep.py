"""Prune a tiny model of one transformers model type through the engine and check the result:
every pruned matrix at the target, every other tensor unchanged, the checkpoint reloads equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.word_salad import write_word_salad

SPARSITY = 0.5


def calibration_text(path: Path) -> Path:
    """About 20 KB of word salad: enough for 4 windows of 32 byte-level tokens."""
    return write_word_salad(path)


@dataclass
class Outcome:
    model_type: str
    method: str
    # pass | partial (> 10% of decoder weights dense) | build (cannot be built tiny) |
    # unsupported (UnsupportedModelError) | fail (a check failed) | crash (any other error)
    status: str
    detail: str = ""


def matrix(t, expert: int | None):
    """The matrix a report entry names: a Linear weight or one expert's slice (the share of
    zeros does not depend on its orientation)."""
    return t if expert is None else t[expert]


def prune_and_check(model_type: str, method: str, root: Path, calib: Path) -> Outcome:
    """Build, prune with `method` at SPARSITY through worker.engine.run.run, and check."""
    import worker.engine.run as run_module
    import worker.engine.stages.save as save_stage
    from service.schemas import CalibrationSpec, PruneSpec
    from tests.support.tiny_arch import make_tiny_arch
    from worker.engine.errors import UnsupportedModelError

    try:
        model_dir = make_tiny_arch(model_type, root / "dense")
    except Exception as exc:  # the sweep covers what can be built tiny; record the rest
        return Outcome(model_type, method, "build", f"{type(exc).__name__}: {exc}"[:300])
    saved = []
    real_save = save_stage.save_model

    def save(model, tokenizer, directory):
        saved.append(model)
        real_save(model, tokenizer, directory)

    cal = CalibrationSpec(dataset=str(calib), nsamples=4, seqlen=32)
    spec = PruneSpec(
        model=str(model_dir), method=method, sparsity=SPARSITY, calibration=cal, device="cpu"
    )
    save_stage.save_model = save
    try:
        report = run_module.run(spec, root / f"pruned-{method}")
    except UnsupportedModelError as exc:
        return Outcome(model_type, method, "unsupported", str(exc))
    except Exception as exc:
        return Outcome(model_type, method, "crash", f"{type(exc).__name__}: {exc}"[:500])
    finally:
        save_stage.save_model = real_save
    problems = check(model_dir, root / f"pruned-{method}", saved[0], report)
    if problems:
        return Outcome(model_type, method, "fail", "; ".join(problems[:5]))
    dense_left = [w for w in report.warnings if "decoder weights are not pruned" in w]
    if dense_left:  # correct, but most of the decoder stays dense: not counted as supported
        return Outcome(model_type, method, "partial", dense_left[0])
    return Outcome(model_type, method, "pass", f"decoder sparsity {report.decoder_sparsity:.3f}")


def check(model_dir: Path, out: Path, model, report) -> list[str]:
    """What is wrong with the pruned `model` (saved to `out`) against the dense `model_dir`."""
    import torch
    from transformers import AutoModelForCausalLM

    problems = []
    dense = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    reloaded = AutoModelForCausalLM.from_pretrained(out).state_dict()
    pruned = model.state_dict()
    if reloaded.keys() != pruned.keys():
        problems.append(f"reloaded keys differ: {sorted(reloaded.keys() ^ pruned.keys())[:3]}")
    problems += [
        f"{k}: reloaded != saved"
        for k in pruned
        if k in reloaded and not torch.equal(reloaded[k], pruned[k])
    ]
    if not report.modules:
        problems.append("no module was pruned")
    touched = set()
    for m in report.modules:
        key, expert = parameter_of(m.name)
        touched.add(key)
        w, w0 = matrix(pruned[key], expert), matrix(dense[key], expert)
        s, s0 = (w == 0).float().mean().item(), (w0 == 0).float().mean().item()
        if not SPARSITY - 1e-6 <= s <= max(SPARSITY + 0.02, s0) + 1e-6:
            problems.append(f"{m.name}: sparsity {s:.3f}, target {SPARSITY}")
    embeddings = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        embeddings.add(id(head.weight))
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in embeddings and name in touched:
            problems.append(f"{name}: embedding or lm_head was pruned")
    for k, t in pruned.items():
        if k not in touched and not torch.equal(t, dense[k]):
            problems.append(f"{k}: changed but not pruned")
    return problems


def parameter_of(name: str) -> tuple[str, int | None]:
    """(state-dict key, expert index or None) of a report module name:
    `a.b.q_proj` -> `a.b.q_proj.weight`; `a.experts.down_proj[3]` -> expert 3 of that tensor."""
    if name.endswith("]"):
        base, _, idx = name[:-1].rpartition("[")
        return base, int(idx)
    return f"{name}.weight", None
