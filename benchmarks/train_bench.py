"""Benchmark the training stages (recovery, smp, movement, gmp) on a real model with
`pruneserve prune`.

    python benchmarks/train_bench.py --model DIR [--steps 100] [--only wanda:2:4:recover,...]
        [--lr LR] [--train-file PATH] [--chat-from PATH] [--precision bf16]
        [--eval-tasks pruneserve_facts] [--extra "--smp-variant S ..."] [--out FILE]

A row is method:sparsity:use, optionally @lr (its own learning rate, e.g.
wanda:0.5:recover@5e-4; rows without one take --lr, else the method's default).

Each row is its own `pruneserve prune` process: calibration 32 x 512 (wikitext2 valid),
training windows 4 x 256 a step from wikitext2 valid, evaluation wikitext2 test 20 x 512,
fp32 weights on CPU, training in --precision (default fp32). With --train-file (the raw
valid.txt) the training corpus is a user file: it is split 90/10 by the seed and the report
adds the perplexity on the held-out 10%.
With --chat-from (a .txt such as wikitext2 valid) the corpus is a chat .jsonl made from it
(`chat_records`): each paragraph of two sentences or more becomes a user turn asking to
continue its first sentence and an assistant turn with the rest, so the held-out perplexity
is over the answers only. --extra: more `pruneserve prune` flags for every row (method
options such as --smp-variant S); --eval-tasks: lm-eval tasks, dense and pruned.
Writes benchmarks/results/train_bench.json (and .md) and prints a table.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import parser, prune_command

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
        *prune_command(args.model, method, sparsity),
        "--eval",
        "wikitext2",
        "--eval-seqlen",
        "512",
        "--eval-windows",
        str(args.eval_windows),
        "--data-dir",
        str(args.data_dir),
        "--train-data",
        str(args.train_data or "wikitext2"),
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
    if args.eval_tasks:
        cmd += ["--eval-tasks", args.eval_tasks]
    cmd += shlex.split(args.extra or "")
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


def chat_records(text: str) -> list[dict]:
    """A chat .jsonl's records from plain text: every paragraph (a line of 20 words or more,
    headings skipped) with two sentences or more becomes a user turn asking to continue its
    first sentence and the assistant's turn with the rest."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("=") or len(line.split()) < 20:
            continue
        first, sep, rest = line.partition(" . ")
        if not sep or len(rest.split()) < 5:
            continue
        question = f"Continue this text: {first} ."
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": rest}]
        out.append({"messages": turns})
    return out


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


def _acc(r: dict, side: str) -> str:
    tasks = r.get("tasks") or []
    return ", ".join(f"{t[side]['acc']:.3f} ± {t[side]['acc_stderr']:.3f}" for t in tasks) or "–"


def table(rows: list[dict]) -> str:
    lines = [
        "| method | sparsity | options | training | objective | precision | steps | ppl dense "
        "| ppl one-shot | ppl after training | held-out dense | held-out after | sparsity reached "
        "| task acc dense | task acc after | lr | s/step (median) | wall s | peak RSS MB |",
        "|" + "---|" * 19,
    ]
    for r in rows:
        ppl, [tr] = r["perplexity"], r["training"]
        spec = r["spec"]
        ts = spec.get("training") or spec.get("recovery") or {}
        held = r.get("heldout") or {}
        opts = " ".join(f"{k}={v}" for k, v in (spec.get("options") or {}).items()) or "–"
        lines.append(
            f"| {spec['method']} | {spec['sparsity']} | {opts} | {tr['stage']} "
            f"| {_objective(ts)} | {tr.get('precision', 'fp32')} | {tr['steps']} "
            f"| {ppl['dense']:.2f} | {_ppl(ppl['after'].get('prune'))} | {ppl['pruned']:.2f} "
            f"| {_ppl(held.get('dense'))} | {_ppl(held.get('pruned'))} | {r['sparsity']:.4f} "
            f"| {_acc(r, 'dense')} | {_acc(r, 'pruned')} | {tr['lr']:g} "
            f"| {tr['time_per_step_s']:.2f} | {r['process_wall_s']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=20)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--train-file", type=Path, default=None, help="a .txt training corpus")
    ap.add_argument("--chat-from", type=Path, default=None, help="a .txt to make a chat .jsonl of")
    ap.add_argument("--eval-tasks", default=None, help="lm-eval tasks, dense and pruned")
    ap.add_argument("--extra", default=None, help="more pruneserve prune flags for every row")
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
    args.train_data = args.train_file
    try:
        if args.chat_from:
            records = chat_records(args.chat_from.read_text(encoding="utf-8"))
            args.train_data = tmp / "chat.jsonl"
            args.train_data.write_text("".join(json.dumps(r) + "\n" for r in records))
            print(f"chat .jsonl: {len(records)} records", file=sys.stderr, flush=True)
        for method, sparsity, use, lr in rows_spec:
            out = tmp / re.sub(r"[^\w.-]", "_", f"{method}-{sparsity}-{use}")
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
