"""The planner's estimate of a recovery stage against the peak memory a real run measures:
a tiny Llama (wide vocabulary, so logits and activations matter as they do at scale) runs
`run()` with recovery in a fresh process; its peak RSS above the imported baseline must lie
within a factor of 1.5 of the plan's peak for the stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.planner.devices import Devices
from service.planner.plan import plan
from service.planner.shape import read_config
from service.schemas import PruneSpec

REPO = Path(__file__).resolve().parents[3]
FACTOR = 1.5
CONFIG = dict(
    hidden_size=256,
    intermediate_size=1024,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=8192,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)
PROBE = """
import json, resource, sys
from pathlib import Path
import torch, transformers
from transformers.models.llama import modeling_llama  # imported before the baseline
from service.schemas import PruneSpec
from worker.engine.run import run

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

spec = PruneSpec.model_validate_json(sys.argv[1])
base = rss()
run(spec, Path(sys.argv[2]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak}))
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch
    import transformers

    from tests.support.tiny_models import save_tokenizer

    out = tmp_path_factory.mktemp("plan") / "llama"
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**CONFIG, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    save_tokenizer(out)
    return out


def test_recovery_estimate_is_within_a_factor_of_the_measured_peak(model_dir, tmp_path):
    text = tmp_path / "train.txt"
    text.write_text(" ".join(f"word{i % 97} token{i % 13}" for i in range(5000)))
    spec = PruneSpec(
        model=str(model_dir),
        method="magnitude",
        sparsity=0.5,
        device="cpu",
        recovery={
            "dataset": str(text),
            "steps": 1,
            "batch_size": 4,
            "micro_batch": 4,
            "seqlen": 256,
            "holdout": 0,
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, spec.model_dump_json(), str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    used = measured["peak"] - measured["base"]
    planned = plan(spec, read_config(model_dir), Devices(1, 1 << 40, "cpu"))
    recover = next(s for s in planned.stages if s.name == "recover")
    assert recover.changes == []  # planned as asked: fp32, whole logits, one process
    ratio = recover.peak_bytes_per_device / used
    print(f"planned {recover.peak_bytes_per_device / 2**20:.0f} MiB, measured {used / 2**20:.0f}")
    assert 1 / FACTOR <= ratio <= FACTOR, (recover.breakdown, used)
