"""The terminal summary shows every stage's perplexity and the sample generations, and
`pruneserve report DIR` prints it again from a local output directory."""

from __future__ import annotations

import re

from tests.clients import test_cli_prune as cli
from tests.clients.test_cli_prune import argv, run_cli

tiny_model, calib = cli.tiny_model, cli.calib  # the prune tests' fixtures

PROMPTS = ["the model", "a sparse row"]


def summary_checks(stdout: str) -> None:
    assert "perplexity per stage" in stdout, stdout
    assert re.search(r"evaluation\s+[\d.]+\s+[\d.]+", stdout), stdout
    assert "2 x 32 tokens" in stdout
    assert re.search(r"dense\s+after pruning", stdout), stdout
    assert "samples (greedy, 4 tokens)" in stdout
    for prompt in PROMPTS:
        assert re.search(rf"{prompt}\s+dense\s+\S", stdout), stdout
    assert len(re.findall(r"^\s+after pruning\s+\S", stdout, re.M)) == 2, stdout


def test_prune_prints_stages_and_samples_and_report_prints_them_again(tiny_model, calib, tmp_path):
    out = tmp_path / "out"
    args = argv(tiny_model, calib, out, eval=str(calib), eval_windows="2", eval_sample_tokens="4")
    for p in PROMPTS:
        args += ["--eval-prompt", p]
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary_checks(proc.stdout)
    assert (out / "README.md").is_file() and (out / "plot_perplexity.png").is_file()
    again = run_cli(["report", str(out)])
    assert again.returncode == 0, again.stderr
    summary_checks(again.stdout)
    assert again.stdout.startswith(f"{out}: ")


def test_report_of_a_directory_without_a_report(tmp_path):
    proc = run_cli(["report", str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: NotFound: {tmp_path} has no pruning_report.json: " + (
        "not an output"
    )


def test_eval_prompt_needs_eval(tiny_model, calib, tmp_path):
    proc = run_cli([*argv(tiny_model, calib, tmp_path / "o"), "--eval-prompt", "hi"])
    assert proc.returncode == 2 and "--eval-prompt needs --eval" in proc.stderr
    assert not (tmp_path / "o").exists()
