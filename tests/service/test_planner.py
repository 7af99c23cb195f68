"""The planner's arithmetic from config.json alone: published sizes, device parsing, the
settings it picks, refusals that name what would fit, and no torch in the API's path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.planner.devices import parse_devices
from service.planner.memory import TrainSettings, training_bytes
from service.planner.plan import plan
from service.planner.shape import ConfigError, read_config, shape_from_config
from service.schemas import PruneSpec

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "benchmarks" / "configs"
GiB = 2**30


def llama(size: str):
    return read_config(CONFIGS / f"llama-3.1-{size}")


def spec(**extra) -> PruneSpec:
    return PruneSpec(model="org/name", method="sparsegpt", sparsity="2:4", **extra)


RECOVER = {"steps": 100, "batch_size": 8, "micro_batch": 4, "seqlen": 2048}


@pytest.mark.parametrize(("size", "published"), [("8b", 8.03e9), ("70b", 70.55e9)])
def test_parameter_counts_match_the_published_ones(size, published):
    assert llama(size).params == pytest.approx(published, rel=2e-3)


@pytest.mark.parametrize(
    ("text", "count", "nbytes"),
    [("8x80GiB", 8, 80 * GiB), ("1x24GiB", 1, 24 * GiB), ("2x40GB", 2, 40 * 10**9)],
)
def test_device_lists_parse(text, count, nbytes):
    d = parse_devices(text)
    assert (d.count, d.bytes_each, d.kind) == (count, nbytes, "cuda")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("8y80GiB", "allowed: COUNTxSIZE"),
        ("8x80", "allowed"),
        ("8x80XB", "unknown unit"),
        ("0x80GiB", "count must be 1 to 1024"),
        ("1x0GiB", "1 MiB to 1 PiB"),
    ],
)
def test_bad_device_lists_name_what_is_allowed(text, says):
    with pytest.raises(ValueError, match=says):
        parse_devices(text)


def test_the_workers_devices_setting_is_checked_at_start():
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match="plan_for '8 GPUs' is not valid; allowed"):
        Settings(PLAN_DEVICES="8 GPUs", ENV="development")


def test_a_config_without_sizes_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="hidden_size"):
        shape_from_config({"vocab_size": 10})
    with pytest.raises(ConfigError, match="has no config.json"):
        read_config(tmp_path)


def test_one_shot_70b_fits_one_80gib_gpu_a_layer_at_a_time():
    p = plan(spec(), llama("70b"), parse_devices("1x80GiB"))
    prune = next(s for s in p.stages if s.name == "prune")
    assert p.fits and prune.peak_bytes_per_device < 30 * GiB
    assert prune.breakdown["statistics (Hessians)"] > 0  # sparsegpt: one layer's Hessians


def test_recovery_8b_fits_one_gpu_with_bf16_and_the_state_offloaded_to_the_host():
    shape, devices = llama("8b"), parse_devices("1x80GiB")
    p = plan(spec(recovery=RECOVER), shape, devices)
    recover = next(s for s in p.stages if s.name == "recover")
    assert p.fits and recover.fits
    assert recover.settings["precision"] == "bf16" and recover.settings["offload"] == "cpu"
    assert recover.changes[-1] == "offload cpu"  # tried after every on-device setting
    # on the device: no master, gradient or AdamW state; on the host: 16 B per KEPT weight
    assert not any(k.startswith(("AdamW", "gradients")) for k in recover.breakdown)
    kept = int(shape.linear * 0.5)  # 2:4
    assert recover.host_bytes >= 16 * kept
    # without offload, the leanest one-device settings (kept-only state) do not fit
    lean = TrainSettings("bf16", True, True, 1, 1, "none")
    on_device = training_bytes(shape, ("weights",), True, 2048, lean, kept=0.5)
    assert on_device["AdamW moments (fp32)"] == 8 * kept
    assert sum(on_device.values()) > p.usable_bytes_per_device


def test_recovery_70b_fits_8_gpus_sharded_with_the_state_offloaded():
    p = plan(spec(recovery=RECOVER), llama("70b"), parse_devices("8x80GiB"))
    recover = next(s for s in p.stages if s.name == "recover")
    assert p.fits and recover.peak_bytes_per_device <= p.usable_bytes_per_device
    assert recover.settings["processes"] > 1 and recover.settings["offload"] == "cpu"
    one = plan(spec(recovery=RECOVER), llama("70b"), parse_devices("1x80GiB"))
    assert not one.fits and "x 80 GiB with processes" in one.refusal


def test_recovery_state_is_counted_for_the_kept_weights_only():
    shape = llama("8b")
    s = TrainSettings("bf16", True, True, 1, 2, "none")
    half = training_bytes(shape, ("weights",), True, 2048, s, kept=0.5)
    full = training_bytes(shape, ("weights",), True, 2048, s, kept=1.0)
    key = "AdamW moments (fp32) / 2 ranks"
    assert half[key] == 8 * int(shape.linear * 0.5) // 2 and full[key] == 8 * shape.linear // 2
    assert half["masks (bits, whole on each rank)"] == shape.linear // 8


def test_recovery_8b_fits_8_gpus_with_the_fewest_changes():
    fp32 = {**RECOVER, "precision": "fp32"}
    p = plan(spec(recovery=fp32), llama("8b"), parse_devices("8x80GiB"))
    recover = next(s for s in p.stages if s.name == "recover")
    assert p.fits and recover.peak_bytes_per_device <= p.usable_bytes_per_device
    procs = recover.settings["processes"]
    assert procs in (2, 4) and recover.changes[-1] == f"processes {procs}"
    assert recover.changes[0] == "precision bf16"  # cheaper changes come before more ranks


def test_a_small_model_fits_as_asked_with_no_change():
    cfg = {
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "model_type": "llama",
    }
    p = plan(spec(recovery={"steps": 10}), shape_from_config(cfg), parse_devices("1x24GiB"))
    assert p.fits and all(not s.changes for s in p.stages)
    assert [s.name for s in p.stages] == ["load", "calibrate", "prune", "recover", "save"]


def test_reconstruction_is_planned_a_block_at_a_time():
    p = plan(spec(), llama("70b"), parse_devices("1x80GiB"), reconstruct=True)
    rec = next(s for s in p.stages if s.name == "reconstruct")
    assert rec.fits and rec.breakdown["fp32 master, gradient, AdamW (16 B/weight)"] == (
        16 * llama("70b").layer_linear
    )


def test_the_planner_and_the_dry_run_route_import_no_torch():
    code = (
        "import sys, service.planner.plan, service.dry_run, service.routes.jobs; "
        "sys.exit('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0
