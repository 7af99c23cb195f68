"""`pruneserve prune`: prunes locally; bad input exits non-zero with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clients.cli.main import main

REPO = Path(__file__).resolve().parents[3]


def argv(model, calib, out, **flags) -> list[str]:
    base = {"method": "wanda", "sparsity": "2:4", "nsamples": "4", "seqlen": "32",
            "device": "cpu", "calibration": str(calib)}  # fmt: skip
    base.update(flags)
    args = ["prune", "--model", str(model), "--output", str(out)]
    for k, v in base.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"method": "pruneall"}, "method: unknown method 'pruneall'; allowed: magnitude, wanda"),
        ({"sparsity": "1.2"}, "sparsity: sparsity 1.2 is out of range; allowed: a fraction"),
        ({"sparsity": "3:2"}, "sparsity: sparsity '3:2' is not valid: need 0 < N < M"),
        ({"nsamples": "0"}, "nsamples: Input should be greater than or equal to 1"),
    ],
)
def test_bad_spec_exits_with_one_line(tmp_path, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(argv(tmp_path / "m", tmp_path / "c.txt", tmp_path / "out", **flags))
    text = str(exc.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_bad_spec_exit_status_of_the_real_command(tmp_path):
    cmd = [sys.executable, "-m", "clients.cli.main"]
    cmd += argv(tmp_path / "m", tmp_path / "c.txt", tmp_path / "out", sparsity="3:2")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "need 0 < N < M" in lines[0], proc.stderr


def test_engine_errors_exit_2_with_the_error(tiny_model_dir, calib_file, tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    assert main(argv(tiny_model_dir("llama"), missing, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: CalibrationError:") and str(missing) in err

    (tmp_path / "exists").mkdir()
    assert main(argv(tiny_model_dir("llama"), calib_file, tmp_path / "exists")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: SpecError:") and "already exists" in err


def test_prunes_and_prints_the_report(tiny_model_dir, calib_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv(tiny_model_dir("gpt_neox"), calib_file, out) + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nm_ok"] is True and report["spec"]["calibration"]["nsamples"] == 4
    assert json.loads((out / "pruning_report.json").read_text())["modules"] == report["modules"]
