"""Task accuracy with lm-evaluation-harness on the model in memory: local task directories
resolve inside themselves only, a service job never reads a path, and a local task scores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from worker.engine.errors import CalibrationError, SpecError
from worker.engine.evaluation.tasks_eval import SHIPPED, evaluate, resolve_tasks


def test_the_shipped_task_resolves_to_its_own_data():
    (ref,) = resolve_tasks(["pruneserve_facts"], None, allow_local=False)
    data = Path(ref.config["dataset_kwargs"]["data_files"]["test"])
    assert ref.name == "pruneserve_facts" and data.is_absolute() and data.is_file()
    assert SHIPPED in data.parents
    assert len(data.read_text().splitlines()) == 40


def test_a_name_that_is_no_local_task_is_left_to_the_harness(tmp_path):
    (ref,) = resolve_tasks(["arc_easy"], tmp_path, allow_local=False)
    assert ref.config is None and ref.name == "arc_easy"


def test_the_tasks_directory_holds_local_tasks_and_a_path_is_for_local_runs_only(tmp_path):
    shutil.copytree(SHIPPED / "pruneserve_facts", tmp_path / "mine")
    (ref,) = resolve_tasks(["mine"], tmp_path, allow_local=False)
    assert str(tmp_path) in ref.config["dataset_kwargs"]["data_files"]["test"]
    with pytest.raises(SpecError, match="a service job names its tasks"):
        resolve_tasks([str(tmp_path / "mine")], None, allow_local=False)
    assert resolve_tasks([str(tmp_path / "mine")], None, allow_local=True)[0].config


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda y: y.replace("test: facts.jsonl", "test: ../../etc/passwd.jsonl"), "inside"),
        (lambda y: y.replace("dataset_path: json", "dataset_path: some/hub_set"), "own data"),
        (lambda y: y + "process_docs: !function utils.process\n", "not plain YAML"),
    ],
)
def test_a_local_task_reads_only_its_own_directory(tmp_path, edit, says):
    task = tmp_path / "t"
    shutil.copytree(SHIPPED / "pruneserve_facts", task)
    yaml = task / "task.yaml"
    yaml.write_text(edit(yaml.read_text()))
    with pytest.raises(CalibrationError, match=says):
        resolve_tasks([str(task)], None, allow_local=True)


def test_a_local_task_scores_the_model_in_memory(tiny_model_dir):
    path = tiny_model_dir("llama")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    refs = resolve_tasks(["pruneserve_facts"], None, allow_local=False)
    calls = []
    out = evaluate(model, tok, refs, 5, torch.device("cpu"), lambda: calls.append(1))
    samples, metrics = out["pruneserve_facts"]
    assert samples == 5 and calls  # cancel is checked on every forward
    assert metrics["acc"] in {k / 5 for k in range(6)} and 0 <= metrics["acc_stderr"] <= 0.5
    assert "acc_norm" in metrics
