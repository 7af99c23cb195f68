"""Benchmark block-wise reconstruction inside the walk on a real model.

    python benchmarks/recon_bench.py --model DIR --second-corpus FILE \
        --runs sparsegpt/2:4/pruned_input/0,1,2,5 [--lr 2e-4] [--batch 2]

Each run (method / sparsity / target / epochs; epochs 0 = no reconstruction) is the engine's
own stages (load, calibrate, prune with reconstruction) in one process, fp32 on the CPU, then
perplexity of the pruned model in memory on wikitext2 test (20 x 512, non-overlapping) and on
a second corpus that is not WikiText (`--second-corpus`, e.g. a licence text). Calibration
32 x 512 from wikitext2 valid. Writes one JSON (every run, per-block losses included).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_args import parser  # noqa: E402


def cpu_s() -> float:
    """CPU seconds of this process (user + system): the work, whatever else the machine runs."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_runs(text: str) -> list[dict]:
    """'m/s/target/e1,e2;m/s/target/e' -> one dict per (row, epochs)."""
    out = []
    for part in text.split(";"):
        method, sparsity, target, epochs = part.split("/")
        out += [
            dict(method=method, sparsity=sparsity, target=target, epochs=int(e))
            for e in epochs.split(",")
        ]
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--second-corpus", type=Path, required=True)
    ap.add_argument("--runs", default="sparsegpt/2:4/pruned_input/0,1,2,5")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--eval-windows", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/recon_bench.json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from service.schemas import CalibrationSpec, PruneSpec
    from worker.engine import run as engine
    from worker.engine.data import calibration
    from worker.engine.evaluation.evaluate import perplexity
    from worker.engine.memory import peak_rss_mb
    from worker.engine.model.model_io import get_weight, load_tokenizer
    from worker.engine.progress import Reporter
    from worker.engine.publish import report

    class Log(Reporter):  # each block's epochs on stderr
        def step(self, done, total, message=None, **values):
            if message and "reconstruction" in message:
                print(message, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="recon_bench_"))
    second = tmp / (args.second_corpus.stem + ".txt")  # read as plain text, whatever its name
    second.write_text(args.second_corpus.read_text(errors="replace"))
    corpora = {
        "wikitext2": calibration.resolve_dataset("wikitext2", "evaluation", args.data_dir),
        "second": second,
    }
    tok = load_tokenizer(args.model)  # every corpus read before the first (long) run
    eval_ids = {n: calibration.eval_ids(tok, src) for n, src in corpora.items()}
    rows = []
    for i, row in enumerate(parse_runs(args.runs)):
        knobs = {"epochs": row["epochs"], "target": row["target"]}
        knobs |= {k: v for k, v in (("lr", args.lr), ("batch_size", args.batch)) if v}
        cal = CalibrationSpec(dataset="wikitext2", nsamples=args.nsamples, seqlen=args.seqlen)
        spec = PruneSpec(
            model=str(args.model),
            method=row["method"],
            sparsity=row["sparsity"],
            calibration=cal,
            device="cpu",
            dtype="float32",
            load="eager",
            reconstruction=knobs if row["epochs"] else None,
        )
        where = engine.Where(tmp / f"row{i}", data_dir=args.data_dir)
        state = engine.Run(spec, where, Log(), torch.device("cpu"), report.new_report(spec, "cpu"))
        state.sources = engine.datasets(spec, where)
        times = {}
        t_all, cpu0 = time.perf_counter(), cpu_s()
        for stage in engine.plan(spec):
            if stage.name == "save":
                break
            t0 = time.perf_counter()
            stage.fn(state)
            times[stage.name] = round(time.perf_counter() - t0, 2)
        job_s, job_cpu = round(time.perf_counter() - t_all, 2), round(cpu_s() - cpu0, 1)
        checks = state.masks.check(lambda n, mods=state.modules: get_weight(mods[n]))
        report.add_masks(state.report, checks, state.results)
        ppl = {
            n: round(
                perplexity(state.streamer, ids, args.seqlen, args.eval_windows, Reporter())[0], 3
            )
            for n, ids in eval_ids.items()
        }
        blocks = [b.model_dump() for b in state.report.reconstruction]
        out = {
            **row,
            "lr": spec.reconstruction.lr if spec.reconstruction else None,
            "batch_size": spec.reconstruction.batch_size if spec.reconstruction else None,
            "ppl": ppl,
            "nm_ok": state.report.nm_ok,
            "sparsity_achieved": round(state.report.sparsity, 5),
            "stages_s": times,
            "job_s_without_eval": job_s,
            "job_cpu_s_without_eval": job_cpu,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "blocks": blocks,
        }
        rows.append(out)
        brief = {k: v for k, v in out.items() if k != "blocks"}
        brief["loss_after/before"] = [round(b["loss_after"] / b["loss_before"], 3) for b in blocks]
        print(json.dumps(brief), file=sys.stderr, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "argv": sys.argv,
                    "threads": args.threads,
                    "second_corpus": str(args.second_corpus),
                    "runs": rows,
                },
                indent=2,
            )
        )
        del state


if __name__ == "__main__":
    main()
