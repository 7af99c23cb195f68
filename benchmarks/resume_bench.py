"""Work redone after a SIGKILL in the walk: `pruneserve prune` is killed once `--kill-at`
layers are final, the same command is run again, and the report's `resumed_at_layer` is
compared with the layers that were done.

    python benchmarks/resume_bench.py --model DIR [--kill-at 20] [--checkpoint-layers 1 0]

SparseGPT 2:4, calibration wikitext2 32 x 512, fp32, lazy (each finished layer is a shard
of the partial output at once, which is how the kill point is seen), no evaluation; each
setting of --checkpoint-layers is one row (0: the default, a save once 5 s passed). The
resumed output is
compared tensor for tensor with an uninterrupted run's. Writes
benchmarks/results/resume_bench.json (and .md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import prune_command

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def command(args, out: Path, every: int) -> list[str]:
    return [
        *prune_command(args.model, "sparsegpt", "2:4"),
        "--load",
        "lazy",
        "--data-dir",
        str(args.data_dir),
        "--checkpoint-layers",
        str(every),
        "--output",
        str(out),
        "--json",
    ]


def finished_layers(partial: Path) -> int:
    return len(list(partial.glob("model-*.safetensors")))


def run_json(cmd: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout), time.perf_counter() - t0


def killed_then_resumed(args, out: Path, every: int) -> dict:
    from service.schemas import partial_dir

    partial = partial_dir(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command(args, out, every),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    while finished_layers(partial) < args.kill_at:
        if proc.poll() is not None:
            raise SystemExit("the run ended before the kill point")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = finished_layers(partial)
    killed_s = time.perf_counter() - t0
    report, resumed_s = run_json(command(args, out, every))
    at = report["resumed_at_layer"]
    return {
        "checkpoint_layers": every,
        "layers_done_at_kill": done,
        "resumed_at_layer": at,
        "layers_redone": done - (at or 0),
        "killed_run_s": round(killed_s, 1),
        "resumed_run_s": round(resumed_s, 1),
        "stages_s": report["stages_s"],
    }


def main() -> None:
    from benchmarks.lazy_bench import same_tensors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--kill-at", type=int, default=20)
    ap.add_argument("--checkpoint-layers", type=int, nargs="+", default=[1, 0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/resume_bench.json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="resume_bench_"))
    rows = []
    try:
        whole, whole_s = run_json(command(args, tmp / "whole", 1))
        for every in args.checkpoint_layers:
            out = tmp / f"resumed{every}"
            r = killed_then_resumed(args, out, every)
            r["same_as_uninterrupted"] = same_tensors(tmp / "whole", out)
            r["n_layers"] = whole["n_layers"]
            rows.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc = {"argv": sys.argv, "uninterrupted_s": round(whole_s, 1), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    lines = [
        "| checkpoint_layers | layers | killed after | resumed at | layers redone "
        "| killed run s | resumed run s | uninterrupted s | same tensors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['checkpoint_layers']} | {r['n_layers']} | {r['layers_done_at_kill']} "
            f"| {r['resumed_at_layer']} | {r['layers_redone']} | {r['killed_run_s']} "
            f"| {r['resumed_run_s']} | {doc['uninterrupted_s']} "
            f"| {'yes' if r['same_as_uninterrupted'] else 'NO'} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
