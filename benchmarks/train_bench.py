"""Benchmark the training stages (recovery, smp, movement, gmp) on a real model with
`pruneserve prune`.

    python benchmarks/train_bench.py --model DIR [--steps 100] [--only wanda:2:4:recover,...]
        [--lr LR] [--train-file PATH] [--out FILE]

A row is method:sparsity:use, optionally @lr (its own learning rate, e.g.
wanda:0.5:recover@5e-4; rows without one take --lr, else the method's default).

Each row is its own `pruneserve prune` process: calibration 32 x 512 (wikitext2 valid),
training windows 4 x 256 a step from wikitext2 valid, evaluation wikitext2 test 20 x 512,
fp32 weights on CPU, training in --precision (default fp32). With --train-file (the raw
valid.txt) the training corpus is a user file: it is split 90/10 by the seed and the report
adds the perplexity on the held-out 10%.
Writes benchmarks/results/train_bench.json (and .md) and prints a table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import parser

ROOT = Path(__file__).resolve().parents[1]
# method, sparsity, use ("recover": one-shot then recovery; "train": the method's own training;
# "train+distill": its training on the LM loss plus distillation from the dense model)
ROWS = [
    ("sparsegpt", "2:4", "recover"),
    ("wanda", "2:4", "recover"),
    ("smp", "2:4", "train"),
    ("wanda", "0.5", "recover"),
]


def run_row(
    args, method: str, sparsity: str, use: str, lr: float | None, steps: int, out: Path
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "clients.cli.main",
        "prune",
        "--model",
        str(args.model),
        "--method",
        method,
        "--sparsity",
        sparsity,
        "--calibration",
        "wikitext2",
        "--nsamples",
        "32",
        "--seqlen",
        "512",
        "--seed",
        "0",
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--eval",
        "wikitext2",
        "--eval-seqlen",
        "512",
        "--eval-windows",
        str(args.eval_windows),
        "--data-dir",
        str(args.data_dir),
        "--train-data",
        str(args.train_file or "wikitext2"),
        "--train-seqlen",
        "256",
        "--train-batch",
        "4",
        "--precision",
        args.precision,
        "--output",
        str(out),
        "--json",
    ]
    use, _, extra = use.partition("+")
    cmd += ["--train-steps", str(steps)] if use == "train" else ["--recover-steps", str(steps)]
    if extra == "distill":  # the movement paper's best objective: LM loss + distillation
        cmd += ["--distill", "--lm-weight", "1"]
    if lr:
        cmd += ["--lr", str(lr)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{method} {sparsity} {use} failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    report["process_wall_s"] = round(time.perf_counter() - t0, 1)
    return report


def parse_row(text: str, default_lr: float | None) -> tuple[str, str, str, float | None]:
    """'wanda:2:4:recover@5e-4' -> ('wanda', '2:4', 'recover', 5e-4)."""
    row, _, lr = text.partition("@")
    head, _, use = row.rpartition(":")
    method, _, sparsity = head.partition(":")
    return method, sparsity, use, float(lr) if lr else default_lr


def _ppl(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _objective(ts: dict) -> str:
    kl = "KL" if ts.get("distill") else ""
    lm = "LM" if ts.get("lm_weight") or not ts.get("distill") else ""
    return " + ".join(x for x in (kl, lm) if x)


def table(rows: list[dict]) -> str:
    lines = [
        "| method | sparsity | training | objective | steps | ppl dense | ppl one-shot "
        "| ppl after training | held-out dense | held-out after | lr | s/step (median) | wall s "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ppl, [tr] = r["perplexity"], r["training"]
        spec = r["spec"]
        ts = spec.get("training") or spec.get("recovery") or {}
        held = r.get("heldout") or {}
        lines.append(
            f"| {spec['method']} | {spec['sparsity']} | {tr['stage']} "
            f"| {_objective(ts)} | {tr['steps']} | {ppl['dense']:.2f} "
            f"| {_ppl(ppl['after'].get('prune'))} | {ppl['pruned']:.2f} "
            f"| {_ppl(held.get('dense'))} | {_ppl(held.get('pruned'))} | {tr['lr']:g} "
            f"| {tr['time_per_step_s']:.2f} | {r['process_wall_s']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=20)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--train-file", type=Path, default=None, help="a .txt training corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="training precision"
    )
    ap.add_argument("--only", default=None, help="comma list of method:sparsity:use")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "train_bench.json"
    )
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rows_spec = [(*row, args.lr) for row in ROWS]
    if args.only:
        rows_spec = [parse_row(x, args.lr) for x in args.only.split(",")]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="train_bench_"))
    try:
        for method, sparsity, use, lr in rows_spec:
            out = tmp / f"{method}-{sparsity}-{use}".replace(":", "_")
            rows.append(run_row(args, method, sparsity, use, lr, args.steps, out))
            shutil.rmtree(out, ignore_errors=True)
            print(f"done {method} {sparsity} {use}", file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"argv": sys.argv, "runs": rows}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    md = table(rows)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
