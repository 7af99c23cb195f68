"""`pruneserve prune` as a user runs it: cheap checks before torch loads, exit codes as the
README says, one typed line per error (a traceback only when asked for), one progress display
and a summary table.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.cli.main import main
from tests.support.tiny_models import make_tiny_model
from tests.support.word_salad import WORDS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model("gpt_neox", tmp_path_factory.mktemp("model") / "gpt_neox")


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """About 20 KB of text: enough for 4 windows of 32 byte-level tokens."""
    path = tmp_path_factory.mktemp("data") / "calib.txt"
    words = (WORDS[(7 * i) % len(WORDS)] for i in range(3600))
    path.write_text(" ".join(words) + "\n")
    return path


def argv(model, calib, out, **flags) -> list[str]:
    base = {
        "method": "wanda",
        "sparsity": "2:4",
        "nsamples": "4",
        "seqlen": "32",
        "device": "cpu",
        "calibration": str(calib),
    }
    base.update(flags)
    args = ["prune", "--model", str(model), "--output", str(out)]
    for k, v in base.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def run_cli(args: list[str], *pyflags: str, **env: str) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, as a user's shell runs it."""
    cmd = [sys.executable, *pyflags, "-m", "clients.cli.main", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    full_env.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=full_env, timeout=300)


def error_lines(stderr: str) -> list[str]:
    """stderr without `python -X importtime`'s lines."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("import time:")]


def imported(stderr: str) -> set[str]:
    """Top-level packages `python -X importtime` reports as imported."""
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", stderr, re.M)
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"method": "pruneall"}, "method: unknown method 'pruneall'; allowed: magnitude, wanda"),
        ({"sparsity": "1.2"}, "sparsity: sparsity 1.2 is out of range; allowed: a fraction"),
        ({"sparsity": "3:2"}, "sparsity: sparsity '3:2' is not valid: need 0 < N < M"),
        ({"sparsity": "2:5"}, "sparsity: sparsity '2:5' is not valid: M must be a power of two"),
        (
            {"sparsity": "0.5", "sparsity_profile": "owl", "owl_samples": "8"},
            "owl.samples: 8 is more than calibration.nsamples (4)",
        ),
        ({"nsamples": "0"}, "nsamples: Input should be greater than or equal to 1"),
        ({"sparsity_profile": "owl"}, "sparsity_profile: 'owl' gives each layer its own"),
        ({"sparsity": "0.5", "owl_lambda": "0.1"}, "owl: these settings are for sparsity_profile"),
        ({"method": "smp", "refine": "dsnot"}, "refine: 'dsnot' works with the one-shot methods"),
        (
            {"reconstruct_epochs": "2", "reconstruct_batch": "8"},
            "reconstruction.batch_size: 8 is more than calibration.nsamples (4)",
        ),
        ({"method": "smp", "reconstruct_epochs": "1"}, "reconstruction: works with the one-shot"),
        ({"reconstruct_epochs": "-1"}, "reconstruction.epochs: Input should be greater than"),
        (
            {"reconstruct_epochs": "1", "reconstruct_lr": "0"},
            "reconstruction.lr: Input should be greater than 0",
        ),
        ({"method": "pattern_lock"}, "recovery: method 'pattern_lock' fine-tunes"),
        ({"recover_steps": "2", "teacher": "o/t", "teacher_revision": "a..b"}, "'a..b' is not"),
    ],
)
def test_bad_spec_exits_2_with_one_typed_line(tmp_path, capsys, flags, message):
    assert main(argv(tmp_path / "m", tmp_path / "c.txt", tmp_path / "out", **flags)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ValidationError: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def cheap_cases(tmp: Path, model: Path, calib: Path) -> list[tuple[list[str], str]]:
    (tmp / "exists").mkdir(exist_ok=True)
    (tmp / "not-a-model").mkdir(exist_ok=True)
    out = tmp / "out"
    return [
        (argv(model, calib, tmp / "exists"), "SpecError: output " + str(tmp / "exists")),
        (argv(tmp / "no" / "model", calib, out), f"ModelLoadError: model directory {tmp}/no/model"),
        (argv(tmp / "not-a-model", calib, out), "ModelLoadError: " + str(tmp / "not-a-model")),
        (argv(model, tmp / "gone.txt", out), f"Error: --calibration: data file {tmp}/gone.txt"),
        (argv(model, calib, out, eval=str(tmp / "gone.jsonl")), "data file " + str(tmp)),
        (argv(model, calib, out, data_dir=str(tmp / "nodata")), "data directory " + str(tmp)),
    ]


def test_cheap_checks_come_before_torch_and_exit_2(tiny_model, calib, tmp_path):
    for args, message in cheap_cases(tmp_path, tiny_model, calib):
        proc = run_cli(args, "-X", "importtime")
        lines = error_lines(proc.stderr)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
        mods = imported(proc.stderr)
        assert "pydantic" in mods  # the import log is read right: the spec was validated
        assert not mods & {"torch", "transformers"}, message
    assert not (tmp_path / "out").exists()


def test_a_missing_named_corpus_is_reported_before_torch_for_methods_that_read_it(
    tiny_model, tmp_path
):
    empty = tmp_path / "data"
    empty.mkdir()
    common = dict(calibration="wikitext2", data_dir=str(empty))
    proc = run_cli(
        argv(tiny_model, "x", tmp_path / "o", **common), "-X", "importtime", HF_DATASETS_OFFLINE="1"
    )
    [line] = error_lines(proc.stderr)
    assert proc.returncode == 2 and "wikitext-2-raw/valid.txt not found" in line, line
    assert not imported(proc.stderr) & {"torch", "transformers"}
    # magnitude reads no calibration data: nothing to refuse, the run goes on and succeeds
    ok = run_cli(
        argv(tiny_model, "x", tmp_path / "m", method="magnitude", **common), HF_DATASETS_OFFLINE="1"
    )
    assert ok.returncode == 0, ok.stderr[-2000:]


def test_engine_errors_exit_3_with_the_error(tiny_model, tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("too short for a window")
    assert main(argv(tiny_model, short, tmp_path / "out")) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: CalibrationError: ") and "seqlen 32 needs at least 33" in err


def test_a_spec_error_found_by_the_engine_exits_2(tiny_model, calib, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    assert main(argv(tiny_model, calib, tmp_path / "out", device="cuda")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: SpecError: device 'cuda' was asked for")


def test_an_unexpected_error_is_one_line_and_the_traceback_only_on_request(
    tiny_model, calib, tmp_path
):
    (tmp_path / "a-file").write_text("not a directory")
    out = tmp_path / "a-file" / "out"  # only saving finds out: nothing the engine expects
    # (no walk checkpoint, which would be the first to write beside the output)
    args = argv(
        tiny_model, calib, out, method="magnitude", sparsity="0.5", checkpoint_layers="100000"
    )
    plain = run_cli(args)
    assert plain.returncode == 3, plain.stderr[-2000:]
    assert "Traceback (most recent call last)" not in plain.stderr, plain.stderr[-2000:]
    last = error_lines(plain.stderr)[-1]
    assert [ln for ln in error_lines(plain.stderr) if ln.startswith("error")] == [last]
    assert last.startswith("error: ") and last.endswith("PRUNESERVE_DEBUG=1 shows the traceback)")
    assert re.search(r"^save\s+✗", plain.stderr, re.M), plain.stderr  # the stage that failed
    debug = run_cli(args, PRUNESERVE_DEBUG="1")
    assert debug.returncode == 3 and "Traceback (most recent call last)" in debug.stderr
    assert error_lines(debug.stderr)[-1] == last.split(" (unexpected;")[0]


def test_a_corrupt_checkpoint_is_a_typed_error_without_traceback(tiny_model, calib, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 200)  # a corrupt header
    proc = run_cli(argv(broken, calib, tmp_path / "out", method="magnitude", sparsity="0.5"))
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = error_lines(proc.stderr)[-1]
    assert last.startswith("error: UnsupportedModelError: broken: ") and "SafetensorError" in last


def test_prunes_with_one_display_and_a_summary_table(tiny_model, calib, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(argv(tiny_model, calib, out, eval=str(calib), eval_windows="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for other_bar in ("Loading weights", "Writing model shards", "it/s]"):
        assert other_bar not in proc.stderr, proc.stderr
    for stage in ("load", "calibrate", "eval_dense", "prune", "eval_pruned", "save"):
        assert re.search(rf"^{stage}\s", proc.stderr, re.M), proc.stderr
    assert "{" not in proc.stdout  # a table, not JSON
    assert re.search(r"sparsity\s+50\.00% \(N:M pattern ok\)", proc.stdout), proc.stdout
    assert re.search(r"perplexity\s+[\d.]+ \(dense\) -> [\d.]+ \(pruned\)", proc.stdout)
    assert proc.stdout.splitlines()[-1] == f"saved to {out}"


def test_json_prints_the_report(tiny_model, calib, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv(tiny_model, calib, out) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nm_ok"] is True and report["spec"]["calibration"]["nsamples"] == 4
    assert json.loads((out / "pruning_report.json").read_text())["modules"] == report["modules"]


def test_owl_and_dsnot_flags_reach_the_report(tiny_model, calib, tmp_path, capsys):
    out = tmp_path / "out"
    flags = {
        "sparsity": "0.6",
        "sparsity_profile": "owl",
        "owl_m": "2",
        "owl_lambda": "0.05",
        "owl_samples": "2",
        "refine": "dsnot",
        "dsnot_cycles": "7",
    }
    assert main(argv(tiny_model, calib, out, **flags) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    spec = report["spec"]
    assert spec["owl"] == {"m": 2.0, "lam": 0.05, "samples": 2}
    assert spec["dsnot"]["max_cycles"] == 7
    assert len(report["layers"]) == 2 and all(
        0.55 <= x["sparsity"] <= 0.65 for x in report["layers"]
    )
    assert sum(m["dsnot_swaps"] for m in report["modules"]) > 0


def test_reconstruction_flags_reach_the_report(tiny_model, calib, tmp_path, capsys):
    out = tmp_path / "out"
    flags = {"reconstruct_epochs": "2", "reconstruct_lr": "0.001"}
    flags["reconstruct_target"] = "dense_input"
    assert main(argv(tiny_model, calib, out, **flags) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rc = report["spec"]["reconstruction"]
    assert (rc["epochs"], rc["lr"], rc["target"]) == (2, 0.001, "dense_input")
    blocks = report["reconstruction"]
    assert [b["layer"] for b in blocks] == [0, 1]
    assert all(b["loss_after"] < b["loss_before"] and len(b["epoch_loss"]) == 2 for b in blocks)


def test_gmp_and_movement_schedule_flags_reach_the_spec(tiny_model, calib, tmp_path, capsys):
    flags = {
        "method": "gmp",
        "sparsity": "0.5",
        "train_steps": "4",
        "train_data": str(calib),
        "train_seqlen": "32",
        "train_batch": "2",
        "warmup_steps": "1",
        "prune_every": "1",
        "cooldown_steps": "1",
        "initial_sparsity": "0.1",
    }
    assert main(argv(tiny_model, calib, tmp_path / "a", **flags) + ["--json"]) == 0
    tr = json.loads(capsys.readouterr().out)["spec"]["training"]
    assert (tr["warmup_steps"], tr["prune_every"], tr["cooldown_steps"]) == (1, 1, 1)
    assert tr["initial_sparsity"] == 0.1 and tr["distill"] is True
    flags = {**flags, "method": "movement", "initial_sparsity": "0.0"}
    assert main(argv(tiny_model, calib, tmp_path / "b", **flags) + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["training"]["distill"] is False
    both = ["--distill", "--lm-weight", "0.5", "--json"]  # the movement paper's LM + KL
    assert main(argv(tiny_model, calib, tmp_path / "d", **flags) + both) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["spec"]["training"]["distill"], report["spec"]["training"]["lm_weight"]) == (
        True,
        0.5,
    )
    assert "0.5 x LM" in json.dumps(report["training"])
    bad = argv(tiny_model, calib, tmp_path / "c", **{**flags, "prune_every": "9"})
    assert main(bad) == 2
    assert "training.prune_every: 9 is longer than the 2 steps" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_flags_reach_the_spec_and_the_report_says_what_ran(
    tiny_model, calib, tmp_path, capsys, precision
):
    flags = {
        "method": "magnitude",
        "sparsity": "0.5",
        "recover_steps": "2",
        "train_data": str(calib),
        "train_seqlen": "32",
        "train_batch": "2",
        "precision": precision,
    }
    args = argv(tiny_model, calib, tmp_path / "a", **flags) + ["--no-gradient-checkpointing"]
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"]["recovery"]["precision"] == precision
    (stage,) = report["training"]
    assert stage["precision"] == precision and stage["gradient_checkpointing"] is False
    with pytest.raises(SystemExit) as exc:
        main(argv(tiny_model, calib, tmp_path / "b", **{**flags, "precision": "fp16"}))
    assert exc.value.code == 2 and "--precision" in capsys.readouterr().err


def test_an_interrupted_prune_says_where_its_progress_is_and_how_to_resume(
    tiny_model, calib, tmp_path
):
    out = tmp_path / "out"
    args = argv(
        tiny_model,
        calib,
        out,
        method="magnitude",
        recover_steps="100000",
        train_data=str(calib),
        train_seqlen="16",
        train_batch="1",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESERVE_")}
    cmd = [sys.executable, "-m", "clients.cli.main", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    resume = tmp_path / "out.resume"
    try:
        deadline = time.monotonic() + 240
        while not list(resume.glob("*.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no training checkpoint was written"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: the work so far is kept in {resume}/ ("), last
    assert "run the same command again to resume" in last
    assert f"rm -r {resume}" in last and resume.is_dir() and not out.exists()


def test_a_missing_corpus_from_a_default_names_the_flag_it_came_from(tiny_model, calib, tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    args = argv(tiny_model, calib, tmp_path / "o", data_dir=str(empty), recover_steps="10")
    proc = run_cli(args, "-X", "importtime", HF_DATASETS_OFFLINE="1")
    [line] = error_lines(proc.stderr)
    assert proc.returncode == 2 and line.startswith(
        "error: CalibrationError: --train-data (default 'wikitext2'): dataset 'wikitext2': "
    ), line
    assert "wikitext-2-raw/valid.txt not found" in line
    assert not imported(proc.stderr) & {"torch", "transformers"}
    given = run_cli(argv(tiny_model, calib, tmp_path / "o", eval=str(tmp_path / "gone.txt")))
    assert error_lines(given.stderr) == [
        f"error: CalibrationError: --eval: data file {tmp_path}/gone.txt not found"
    ]


def test_eval_tasks_give_task_accuracy_dense_and_pruned_without_bars(tiny_model, calib, tmp_path):
    out = tmp_path / "out"
    flags = {"eval": str(calib), "eval_windows": "1"}
    flags.update(eval_tasks="pruneserve_facts", eval_task_limit="4")
    proc = run_cli(argv(tiny_model, calib, out, **flags))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "it/s]" not in proc.stderr and "Tokenizing" not in proc.stderr, proc.stderr
    assert re.search(r"pruneserve_facts\s+[\d.]+ \(dense\) -> [\d.]+ \(pruned\) acc", proc.stdout)
    (task,) = json.loads((out / "pruning_report.json").read_text())["tasks"]
    assert task["samples"] == 4 and set(task["dense"]) >= {"acc", "acc_stderr", "acc_norm"}
