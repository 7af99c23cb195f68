"""The walk does not churn memory: more calibration batches reuse the same pages instead of
faulting in fresh ones from the kernel for every batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import json, resource, sys
from pathlib import Path
from service.schemas import CalibrationSpec, PruneSpec
from worker.engine.progress import Reporter
from worker.engine.run import run

class Faults(Reporter):
    def __init__(self):
        self.at = {}
    def stage(self, name, total=0, span=(0.0, 100.0)):
        self.at[name] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

model, calib, out, n, load = sys.argv[1:6]
cal = CalibrationSpec(dataset=calib, nsamples=int(n), seqlen=256, seed=0)
# checkpoint_layers 2 of 2 layers: no resume checkpoint (their timing would vary the count)
spec = PruneSpec(model=model, method="wanda", sparsity="2:4", calibration=cal, device="cpu",
                 dtype="float32", load=load, checkpoint_layers=2)
faults = Faults()
run(spec, out, reporter=faults)
print(json.dumps(faults.at["save"] - faults.at["prune"]))
"""


def prune_faults(model: Path, calib: Path, out: Path, nsamples: int, load: str) -> int:
    """Minor page faults of the prune stage of a fresh `run` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [str(model), str(calib), str(out), str(nsamples), load]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_more_batches_fault_in_no_more_pages(tiny_model_dir, calib_file, tmp_path):
    # seqlen 256: batches of 4 windows; 4 windows are one batch per layer pass, 16 are four.
    # Each batch's temporaries (up to 512 KiB here) used to be mapped fresh and unmapped again
    # (about 700 page faults per extra batch and layer pass, lazy); reused, under 200 remain.
    model, load = tiny_model_dir("llama"), "lazy"
    one = prune_faults(model, calib_file, tmp_path / "one", 4, load)
    four = prune_faults(model, calib_file, tmp_path / "four", 16, load)
    extra_passes = 3 * 2 * 2  # 3 more batches, 2 layers, a statistics pass and an output pass
    activations = 12 * 256 * 64 * 4 // 4096  # pages of the 12 windows' larger buffers
    assert (four - one - activations) / extra_passes < 400, (one, four)
