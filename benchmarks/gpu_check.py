"""Everything that needs a GPU, in one command: the `gpu`-marked test suite and the SmolLM2
figures on CUDA, written as JSON.

    python benchmarks/gpu_check.py --model DIR [--recover-steps 100] [--out FILE]

Figures (each a `run()` of the engine in this process, peak CUDA memory from
torch.cuda.max_memory_allocated): Wanda and SparseGPT 2:4 one-shot (calibration 128 x 2048,
wikitext2) wall time and peak; then Wanda 2:4 with `--recover-steps` recovery steps (4 x 256,
KL) in bf16: s/step and peak. With no CUDA GPU visible it says so and exits 0, running nothing.
Writes benchmarks/results/gpu_check.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import parser

ROOT = Path(__file__).resolve().parents[1]


def suite() -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:cacheprovider",
            "tests/worker/engine/test_cuda.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-1:] or [proc.stderr[-500:]]
    return {"exit": proc.returncode, "summary": tail[0], "s": round(time.perf_counter() - t0, 1)}


def figure(args, name: str, **kw) -> dict:
    import torch

    from service.schemas import CalibrationSpec, PruneSpec
    from worker.engine.run import run

    cal = CalibrationSpec(dataset="wikitext2", nsamples=128, seqlen=2048)
    spec = PruneSpec(model=str(args.model), sparsity="2:4", calibration=cal, device="cuda", **kw)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        report = run(spec, Path(out) / "m", data_dir=args.data_dir)
    row = {
        "row": name,
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
    }
    for tr in report.training:
        row.update(s_per_step=tr.time_per_step_s, precision=tr.precision, loss_last=tr.loss[-1])
    return row


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--recover-steps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gpu_check.json")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing run (the gpu suite and figures need one)")
        return
    from service.schemas import TrainingSpec

    result = {"device": torch.cuda.get_device_name(0), "suite": suite(), "figures": []}
    rec = TrainingSpec(
        dataset="wikitext2",
        steps=args.recover_steps,
        seqlen=256,
        batch_size=4,
        micro_batch=4,
        precision="bf16",
    )
    for name, kw in (
        ("wanda 2:4", {"method": "wanda"}),
        ("sparsegpt 2:4", {"method": "sparsegpt"}),
        (
            f"wanda 2:4 + {args.recover_steps} recovery steps bf16",
            {"method": "wanda", "recovery": rec},
        ),
    ):
        result["figures"].append(figure(args, name, **kw))
        print(json.dumps(result["figures"][-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["suite"]))


if __name__ == "__main__":
    main()
