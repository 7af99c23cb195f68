"""Benchmark every method x {0.5, 2:4} with `pruneserve prune` and compare with a dense forward.

    python benchmarks/prune_bench.py --model DIR [--nsamples 32 --seqlen 512 --eval-windows 20]

Each prune runs as its own `pruneserve prune` process (so peak RSS is that process's); the
dense forward of the same calibration windows through the decoder is timed in this process,
before and after the prune runs, and each method's prune time is quoted as a ratio to it.
Writes benchmarks/results/bench.json (and .md) and prints a markdown table.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import parser, prune_command

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = [(m, s) for m in ("magnitude", "wanda", "sparsegpt") for s in ("0.5", "2:4")]


def dense_forward_s(model_dir: Path, data_dir: Path, nsamples: int, seqlen: int) -> float:
    """Seconds for one dense pass of the calibration windows through every decoder layer."""
    import torch

    from worker.engine.data import calibration
    from worker.engine.model.model_io import decoder_layers, load_model
    from worker.engine.walk.streaming import LayerStreamer
    from worker.engine.walk.walker import batch_size, capture, run_layer

    model, tok = load_model(model_dir, "float32")
    _, layers = decoder_layers(model)
    src = calibration.resolve_dataset("wikitext2", "calibration", data_dir)
    ids = calibration.calibration_ids(tok, "wikitext2", src, nsamples, seqlen, 0)
    batch = batch_size(seqlen, nsamples)
    t0 = time.perf_counter()
    cap = capture(LayerStreamer(model, layers, torch.device("cpu")), ids, batch)
    inps, outs = cap.hidden, torch.empty_like(cap.hidden)
    for i, layer in enumerate(layers):
        run_layer(layer, inps, outs, cap.calls[i], batch)
        inps, outs = outs, inps
    return time.perf_counter() - t0


def prune_once(args, method: str, sparsity: str, out: Path) -> dict:
    cmd = [
        *prune_command(args.model, method, sparsity, args.nsamples, args.seqlen),
        "--eval",
        "wikitext2",
        "--eval-seqlen",
        str(args.seqlen),
        "--eval-windows",
        str(args.eval_windows),
        "--data-dir",
        str(args.data_dir),
        "--output",
        str(out),
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{method} {sparsity} failed:\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    report["process_wall_s"] = round(wall, 2)
    return report


def table(rows: list[dict], dense_s: float) -> str:
    lines = [
        f"Dense forward of the calibration set: {dense_s:.1f} s (median).",
        "",
        "| method | sparsity | ppl dense | ppl pruned | calibrate s | prune s | ratio to dense fwd"
        " | eval s (dense+pruned) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r["stages_s"]
        work = st.get("calibrate", 0.0) + st["prune"]
        ppl = r["perplexity"]
        lines.append(
            f"| {r['spec']['method']} | {r['spec']['sparsity']} | {ppl['dense']:.2f} | "
            f"{ppl['pruned']:.2f} | {st.get('calibrate', 0.0):.1f} | {st['prune']:.1f} | "
            f"{work / dense_s:.2f}x | {st['eval_dense'] + st['eval_pruned']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--eval-windows", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma list of method:sparsity to run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench.json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    runs = RUNS
    if args.only:
        runs = [tuple(x.split(":", 1)) for x in args.only.split(",")]
    dense = [dense_forward_s(args.model, args.data_dir, args.nsamples, args.seqlen)]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="prune_bench_"))
    try:
        for method, sparsity in runs:
            rows.append(prune_once(args, method, sparsity, tmp / f"{method}-{sparsity}"))
            shutil.rmtree(tmp / f"{method}-{sparsity}", ignore_errors=True)
            print(f"done {method} {sparsity}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dense.append(dense_forward_s(args.model, args.data_dir, args.nsamples, args.seqlen))
    dense_s = statistics.median(dense)
    md = table(rows, dense_s)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"argv": sys.argv, "threads": args.threads, "dense_forward_s": dense, "runs": rows},
            indent=2,
        )
    )
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
