"""Pattern lock: the mask is the input checkpoint's own zeros, kept exactly through recovery
on the user's data; without a teacher the LM loss trains (the report says so), with one the
training distils from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from safetensors.torch import load_file

from service.schemas import PruneSpec
from worker.engine.errors import PruningError
from worker.engine.run import run


@pytest.fixture(scope="module")
def sparse_input(tiny_model_dir, tmp_path_factory):
    """A 2:4 checkpoint (magnitude), the input a user brings to pattern lock."""
    out = tmp_path_factory.mktemp("sparse") / "llama-2-4"
    spec = PruneSpec(
        model=str(tiny_model_dir("llama")), method="magnitude", sparsity="2:4", device="cpu"
    )
    run(spec, out)
    return out


def lock(model, calib_file, **extra) -> PruneSpec:
    recovery = {
        "dataset": str(calib_file),
        "steps": 3,
        "seqlen": 32,
        "batch_size": 2,
        "lr": 1e-2,
        **extra.pop("recovery", {}),
    }
    return PruneSpec(
        model=str(model),
        method="pattern_lock",
        sparsity="2:4",
        device="cpu",
        recovery=recovery,
        **extra,
    )


def test_pattern_lock_keeps_exactly_the_inputs_zeros(sparse_input, calib_file, tmp_path):
    report = run(lock(sparse_input, calib_file), tmp_path / "out")
    before = load_file(sparse_input / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    names = [m.name + ".weight" for m in report.modules]
    assert names and all(n in before for n in names)
    changed = 0
    for n in names:
        assert ((after[n] == 0) == (before[n] == 0)).all(), n
        changed += int((after[n] != before[n]).sum())
    assert changed > 0  # the kept weights trained
    assert report.nm_ok is True and report.sparsity == pytest.approx(0.5)
    (tr,) = report.training
    assert tr.teacher is None and "LM cross-entropy" in tr.objective
    assert "no teacher" in tr.objective and "input itself" in tr.objective


def test_a_named_teacher_is_distilled_from(sparse_input, calib_file, tiny_model_dir, tmp_path):
    teacher = str(tiny_model_dir("llama"))
    report = run(lock(sparse_input, calib_file, teacher={"model": teacher}), tmp_path / "out")
    (tr,) = report.training
    assert tr.teacher.startswith(f"teacher {teacher}") and "KL" in tr.objective


def test_a_dense_input_is_refused_with_how_to_keep_it_dense(tiny_model_dir, calib_file, tmp_path):
    with pytest.raises(PruningError, match="no zero weight.*skip"):
        run(lock(tiny_model_dir("llama"), calib_file), tmp_path / "out")


@pytest.mark.parametrize(
    "extra, says",
    [
        ({"recovery": None}, "recovery: method 'pattern_lock' fine-tunes"),
        ({"recovery": {"distill": True}}, "recovery.distill: .* the input itself"),
        ({"teacher": {"model": "org/t"}, "recovery": {"distill": False}}, "teacher: no training"),
        ({"teacher": {"model": "org/t", "revision": "a..b"}}, "revision 'a..b' is not valid"),
    ],
)
def test_the_contract_names_what_pattern_lock_needs(calib_file, extra, says):
    data = {
        "model": "m",
        "method": "pattern_lock",
        "sparsity": "2:4",
        "recovery": {"dataset": str(calib_file)},
    }
    if "recovery" in extra:
        r = extra.pop("recovery")
        data["recovery"] = None if r is None else {**data["recovery"], **r}
    with pytest.raises(ValidationError, match=says):
        PruneSpec.model_validate({**data, **extra})
