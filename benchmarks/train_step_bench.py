"""Time and peak memory of one recovery step (KL distillation, masks 2:4) on a real model.

    python benchmarks/train_step_bench.py --model DIR [--baseline-root DIR] [--steps 4]
        [--only speed:bf16,memory:fp32,...] [--out FILE]
    python benchmarks/train_step_bench.py --model DIR --interleave ROUNDS [--steps 3]
        [--threads 1] [--out FILE]

--interleave: bf16 against fp32 in ONE process on the same model, masks and data, for a
machine shared with other jobs: ROUNDS rounds, each a block of --steps steps in fp32 and one
in bf16 (which goes first alternates), the first step of each block dropped; per step the
wall and the CPU seconds (the process's, every thread); the ratio of the medians.

speed rows: s/step of `--steps` steps of 4 x 256 tokens (median after the first), fp32 and
bf16 (autocast, fp32 master weights), gradient checkpointing and chunked losses on (the
defaults). memory rows: the peak RSS a step adds over the state before it, micro-batch 4 x 512,
fp32: with and without gradient checkpointing; bf16. With --baseline-root (a checkout of the
engine before mixed precision, checkpointing and chunked losses) the same step of that engine
is a row too ("before"). Each row is its own process; data: wikitext2 valid. Writes
benchmarks/results/train_step_bench.json and prints a table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_args import parser

ROOT = Path(__file__).resolve().parents[1]
ROWS = [
    "speed:before",
    "speed:fp32",
    "speed:bf16",
    "memory:before",
    "memory:fp32-nockpt",
    "memory:fp32",
    "memory:bf16",
]


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Peak(threading.Thread):
    """The highest RSS seen, sampled every 2 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = rss(), threading.Event()

    def run(self):
        while not self.stop.wait(0.002):
            self.peak = max(self.peak, rss())


def setup(model_dir: Path):
    """SmolLM2 in fp32, its dense copy (the teacher), the decoder's Linears and their 2:4
    masks by magnitude, and the calibration module (the engine's folders, or the flat layout
    of an older checkout given as the baseline)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from worker.engine.data import calibration
        from worker.engine.prune.mask_state import MaskState
        from worker.engine.prune.masks import Pattern, n_of_m
    except ImportError:  # an engine from before the folders
        from worker.engine.mask_state import MaskState
        from worker.engine.masks import Pattern, n_of_m

        from worker.engine import calibration

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_dir)
    teacher = copy.deepcopy(model)
    mods = {
        n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n
    }
    masks, pattern = MaskState(), Pattern(0.5, 2, 4)
    for n, m in mods.items():
        masks.record(n, n_of_m(m.weight.detach().abs(), 2, 4), pattern)
    return calibration, model, tok, teacher, mods, masks


def one(kind: str, variant: str, model_dir: Path, data_dir: Path, steps: int) -> dict:
    """One row, in this process (the engine on sys.path: this checkout or the baseline)."""
    from worker.engine.progress import Reporter
    from worker.engine.train import loop
    from worker.engine.train.checkpoint import Checkpoints
    from worker.engine.train.objective import Objective
    from worker.engine.train.tasks import Recovery

    calibration, model, tok, teacher, mods, masks = setup(model_dir)
    micro, seqlen = (4, 256) if kind == "speed" else (4, 512)
    n_steps = steps if kind == "speed" else 1
    text = (data_dir / "wikitext-2-raw" / "valid.txt").read_text()
    ids = calibration.calibration_windows(
        calibration.tokenize(tok, text), n_steps * micro, seqlen, 0
    )
    kw = dict(
        steps=n_steps,
        batch_size=micro,
        micro_batch=micro,
        lr=1e-4,
        warmup_steps=0,
        weight_decay=0.0,
        checkpoint_every=10**6,
    )
    if variant != "before":
        kw["precision"] = variant.split("-")[0]
        kw["checkpointing"] = not variant.endswith("nockpt")
    cfg = loop.LoopConfig(**kw)
    ckpt = Checkpoints(Path(os.environ.get("TMPDIR", "/tmp")) / f"tsb-{os.getpid()}", "r", "k")
    peak = Peak()
    before = rss()
    peak.start()
    res = loop.train(
        model, teacher, ids, Recovery(mods, masks), Objective(True, 2.0, 0.0), cfg, Reporter(), ckpt
    )
    peak.stop.set()
    peak.join()
    times = res.times[1:] if len(res.times) > 1 else res.times
    return {
        "row": f"{kind}:{variant}",
        "tokens_per_step": micro * seqlen,
        "s_per_step": round(statistics.median(times), 3),
        "step_times": res.times,
        "loss": res.loss,
        "step_peak_mib": round((peak.peak - before) / 2**20, 1),
        "precision": getattr(res, "precision", "fp32"),
        "checkpointing": getattr(res, "checkpointing", False),
    }


class _Clock:
    """A Reporter that marks the process's CPU seconds at the end of every step."""

    def __init__(self):
        from worker.engine.progress import Reporter

        self.base, self.marks = Reporter(), []

    def __getattr__(self, name):
        return getattr(self.base, name)

    def step(self, done, total, message=None, **values) -> None:
        self.marks.append(time.process_time())


def interleaved(model_dir: Path, data_dir: Path, rounds: int, steps: int, threads: int) -> dict:
    """bf16 and fp32 blocks of `steps` recovery steps (4 x 256, KL), alternated in this
    process on the same model, masks and windows."""
    import torch

    from worker.engine.train import loop
    from worker.engine.train.checkpoint import Checkpoints
    from worker.engine.train.objective import Objective
    from worker.engine.train.tasks import Recovery

    torch.set_num_threads(threads)
    calibration, model, tok, teacher, mods, masks = setup(model_dir)
    text = (data_dir / "wikitext-2-raw" / "valid.txt").read_text()
    ids = calibration.calibration_windows(calibration.tokenize(tok, text), steps * 4, 256, 0)
    ckpt = Checkpoints(Path(os.environ.get("TMPDIR", "/tmp")) / f"tsb-{os.getpid()}", "r", "k")
    rows: dict[str, dict[str, list[float]]] = {p: {"wall": [], "cpu": []} for p in ("fp32", "bf16")}
    for r in range(rounds):
        for precision in ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32"):
            cfg = loop.LoopConfig(
                steps=steps,
                batch_size=4,
                micro_batch=4,
                lr=1e-4,
                warmup_steps=0,
                weight_decay=0.0,
                checkpoint_every=10**6,
                precision=precision,
                checkpointing=True,
            )
            clock = _Clock()
            res = loop.train(
                model,
                teacher,
                ids,
                Recovery(mods, masks),
                Objective(True, 2.0, 0.0),
                cfg,
                clock,
                ckpt,
            )
            rows[precision]["wall"] += res.times[1:]
            rows[precision]["cpu"] += [
                round(b - a, 3) for a, b in zip(clock.marks, clock.marks[1:], strict=False)
            ]
            print(precision, res.times, flush=True)
    med = {p: {k: statistics.median(v) for k, v in row.items()} for p, row in rows.items()}
    return {
        "rounds": rounds,
        "steps_per_block": steps,
        "threads": threads,
        "steps": rows,
        "median": med,
        "speedup_wall": round(med["fp32"]["wall"] / med["bf16"]["wall"], 3),
        "speedup_cpu": round(med["fp32"]["cpu"] / med["bf16"]["cpu"], 3),
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--baseline-root", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", default=",".join(ROWS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_step_bench.json")
    ap.add_argument("--one", default=None, help=argparse_hidden())
    ap.add_argument("--interleave", type=int, default=0, help="rounds of bf16 against fp32")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (--interleave)")
    args = ap.parse_args()
    if args.interleave:
        res = interleaved(args.model, args.data_dir, args.interleave, args.steps, args.threads)
        res["load_before"] = os.getloadavg()
        res["machine"] = {"cpus": os.cpu_count(), "note": "machine shared with other jobs"}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1))
        print(
            json.dumps(res["median"]),
            "speedup wall",
            res["speedup_wall"],
            "cpu",
            res["speedup_cpu"],
        )
        return
    if args.one:
        kind, variant = args.one.split(":")
        print(json.dumps(one(kind, variant, args.model, args.data_dir, args.steps)))
        return
    machine = {
        "cpus": os.cpu_count(),
        "amx_bf16": "amx_bf16" in Path("/proc/cpuinfo").read_text(),
        "note": "machine shared with other jobs",
    }
    rows: list[dict] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for row in args.only.split(","):
        if row.endswith(":before") and args.baseline_root is None:
            continue
        root = args.baseline_root if row.endswith(":before") else ROOT
        env = {**os.environ, "PYTHONPATH": str(root)}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--model",
            str(args.model),
            "--data-dir",
            str(args.data_dir),
            "--steps",
            str(args.steps),
            "--one",
            row,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
        if proc.returncode != 0:
            raise SystemExit(f"{row} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(
            f"{row}: {rows[-1]['s_per_step']} s/step, step peak {rows[-1]['step_peak_mib']} "
            f"MiB ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        result = {"model": str(args.model), "machine": machine, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1))  # after each row: a partial run counts


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
