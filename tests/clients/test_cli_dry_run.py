"""`pruneserve prune --dry-run`: a plan from a directory holding only config.json, JSON for
scripts, exit 0 when it fits and 2 when refused, --plan-for checked before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clients.cli.main import main

CONFIGS = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"


@pytest.fixture
def config_only(tmp_path) -> Path:
    """Llama-3.1-70B as a directory with its config.json and nothing else."""
    shutil.copy(CONFIGS / "llama-3.1-70b" / "config.json", tmp_path / "config.json")
    return tmp_path


def dry_run(model: Path, *flags: str) -> list[str]:
    return [
        "prune",
        "--model",
        str(model),
        "--method",
        "wanda",
        "--sparsity",
        "2:4",
        "--dry-run",
        *flags,
    ]


def test_json_plan_from_a_config_only_directory(config_only, capsys):
    assert main(dry_run(config_only, "--plan-for", "1x80GiB", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is True and out["model"]["layers"] == 80
    assert [s["name"] for s in out["stages"]] == ["load", "calibrate", "prune", "save"]
    for stage in out["stages"]:
        assert {"name", "fits", "peak_bytes_per_device"} <= stage.keys()


def test_a_plan_that_does_not_fit_exits_2_naming_what_would(config_only, capsys):
    code = main(dry_run(config_only, "--recover-steps", "10", "--plan-for", "1x80GiB"))
    out, err = capsys.readouterr()
    assert code == 2
    assert "recover" in out and "DOES NOT FIT" in out
    assert err.startswith("error: PlanRefused: does not fit 1 x 80GiB: recover needs")
    assert "x 80 GiB with processes" in err


@pytest.mark.parametrize("bad", ["8y80GiB", "8x80", "0x80GiB"])
def test_a_bad_plan_for_is_a_usage_error(config_only, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        main(dry_run(config_only, "--plan-for", bad))
    assert exc.value.code == 2
    assert "argument --plan-for" in capsys.readouterr().err


def test_plan_for_without_dry_run_and_a_missing_config_are_usage_errors(tmp_path, capsys):
    argv = ["prune", "--model", str(tmp_path), "--method", "magnitude", "--sparsity", "0.5"]
    assert main([*argv, "--plan-for", "1x24GiB"]) == 2
    assert "--plan-for plans only: add --dry-run" in capsys.readouterr().err
    assert main([*argv, "--dry-run", "--plan-for", "1x24GiB"]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_train_processes_reach_the_plan_and_are_refused_for_a_method_s_training(
    config_only, capsys
):
    flags = ("--recover-steps", "10", "--train-processes", "2", "--plan-for", "2x80GiB")
    main([*dry_run(config_only, *flags), "--json"])
    recover = json.loads(capsys.readouterr().out)["stages"][-2]
    assert recover["name"] == "recover" and recover["settings"]["processes"] == 2
    main([*dry_run(config_only, *flags, "--train-offload", "cpu"), "--json"])
    recover = json.loads(capsys.readouterr().out)["stages"][-2]
    assert recover["settings"]["offload"] == "cpu" and "offload cpu" not in recover["changes"]
    assert recover["host_bytes"] > 16 * 34 * 10**9  # the kept weights' state of 70B at 2:4
    argv = [
        "prune",
        "--model",
        str(config_only),
        "--method",
        "gmp",
        "--sparsity",
        "0.5",
        "--train-processes",
        "2",
        "--dry-run",
    ]
    assert main(argv) == 2
    assert "FSDP ranks and CPU offload train recovery only" in capsys.readouterr().err
