"""Benchmark OWL, DSnoT and SparseGPT 2:4 over calibration seeds on a real model.

    python benchmarks/oneshot_bench.py --model DIR [--parts owl,dsnot,seeds]

In one process, the engine's own stages (load, calibrate, prune) per row, then perplexity of
the pruned model in memory: calibration 32 x 512 wikitext2 valid, evaluation wikitext2 test
20 x 512 (and, for the seeds part, a second corpus that is not WikiText: the licence texts of
/usr/share/common-licenses, English legal prose). Wall time is calibrate + prune as a ratio to
one dense forward of the calibration windows, measured in the same run before and after.
The "reference" rows swap the SparseGPT math for a transcription of IST-DASLab/sparsegpt's
`fasterprune`, run per Linear (no stacked q/k/v) on the same Hessian and the same walk.
Writes benchmarks/results/oneshot_bench.json (and .md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LICENSES = Path("/usr/share/common-licenses")


def licence_corpus(out: Path) -> Path:
    """Every licence text once (symlinked aliases skipped), joined by blank lines."""
    files = sorted(p for p in LICENSES.iterdir() if p.is_file() and not p.is_symlink())
    out.write_text("\n\n".join(p.read_text(errors="replace") for p in files))
    return out


def reference_sparsegpt():
    """The registry entry for SparseGPT with the reference math, per Linear."""
    from tests.worker.engine.methods.test_sparsegpt import reference_fasterprune
    from worker.engine.methods.base import Method, MethodResult

    def fn(weights, stats, pattern, options):
        H = stats.hessian
        out, masks = [], []
        for w in weights:
            W = reference_fasterprune(
                w.float(),
                H,
                pattern.ratio,
                pattern.n,
                pattern.m,
                options.blocksize,
                options.percdamp,
            )
            out.append(W.to(w.dtype))
            masks.append(W == 0)
        return MethodResult(out, masks)

    return Method(fn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--parts", default="owl,dsnot,seeds")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--eval-windows", type=int, default=20)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "oneshot_bench.json"
    )
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from benchmarks.prune_bench import dense_forward_s
    from service.schemas import CalibrationSpec, PruneSpec
    from worker.engine import methods as registry
    from worker.engine import run as engine
    from worker.engine.data import calibration
    from worker.engine.evaluation.evaluate import perplexity
    from worker.engine.model.model_io import decoder_layers, get_weight, load_model
    from worker.engine.progress import Reporter
    from worker.engine.publish import report
    from worker.engine.walk.streaming import LayerStreamer

    parts = args.parts.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="oneshot_bench_"))
    corpora = {"wikitext2": calibration.resolve_dataset("wikitext2", "evaluation", args.data_dir)}
    if "seeds" in parts:
        corpora["licences"] = licence_corpus(tmp / "licences.txt")
    rows_spec = []
    if "owl" in parts:
        rows_spec += [
            dict(method=m, sparsity=s, sparsity_profile=p)
            for m in ("wanda", "sparsegpt")
            for s in (0.5, 0.6, 0.7)
            for p in ("uniform", "owl")
        ]
    if "dsnot" in parts:
        rows_spec += [dict(method=m, sparsity="2:4") for m in ("wanda", "sparsegpt")]
        rows_spec += [
            dict(method=m, sparsity=s, refine="dsnot")
            for m in ("wanda", "sparsegpt")
            for s in (0.6, 0.7, "2:4")
        ]
    if "seeds" in parts:
        rows_spec += [
            dict(method="sparsegpt", sparsity="2:4", seed=seed, math=math, both=True)
            for seed in range(args.seeds)
            for math in ("ours", "reference")
        ]

    dense_fwd = [dense_forward_s(args.model, args.data_dir, args.nsamples, args.seqlen)]
    model, tok = load_model(args.model, "float32")
    streamer = LayerStreamer(model, decoder_layers(model)[1], torch.device("cpu"))
    eval_ids = {name: calibration.eval_ids(tok, src) for name, src in corpora.items()}
    dense_ppl = {}
    for name, ids in eval_ids.items():
        ppl, _ = perplexity(streamer, ids, args.seqlen, args.eval_windows, Reporter())
        dense_ppl[name] = round(ppl, 3)
    del model, streamer
    print(json.dumps({"dense_ppl": dense_ppl}), file=sys.stderr, flush=True)
    ours = registry.REGISTRY["sparsegpt"]
    rows = []
    for i, row in enumerate(rows_spec):
        row = dict(row)
        seed, math, both = row.pop("seed", 0), row.pop("math", "ours"), row.pop("both", False)
        cal = CalibrationSpec(
            dataset="wikitext2", nsamples=args.nsamples, seqlen=args.seqlen, seed=seed
        )
        spec = PruneSpec(
            model=str(args.model), calibration=cal, device="cpu", dtype="float32", **row
        )
        registry.REGISTRY["sparsegpt"] = reference_sparsegpt() if math == "reference" else ours
        where = engine.Where(tmp / f"row{i}", data_dir=args.data_dir)
        state = engine.Run(
            spec, where, Reporter(), torch.device("cpu"), report.new_report(spec, "cpu")
        )
        state.sources = engine.datasets(spec, where)
        times = {}
        for stage in engine.plan(spec):
            if stage.name == "save":
                break
            t0 = time.perf_counter()
            stage.fn(state)
            times[stage.name] = time.perf_counter() - t0
        registry.REGISTRY["sparsegpt"] = ours
        checks = state.masks.check(lambda n, mods=state.modules: get_weight(mods[n]))
        report.add_masks(state.report, checks, state.results)
        ppl = {}
        for name in corpora if both else ["wikitext2"]:
            ids = eval_ids[name]
            ppl[name] = round(
                perplexity(state.streamer, ids, args.seqlen, args.eval_windows, Reporter())[0], 3
            )
        out = {
            **row,
            "seed": seed,
            "math": math,
            "ppl": ppl,
            "sparsity_achieved": round(state.report.sparsity, 5),
            "calibrate_s": round(times.get("calibrate", 0.0), 2),
            "prune_s": round(times["prune"], 2),
            "layers": [
                (x.index, round(x.outlier_ratio, 5), round(x.sparsity, 4))
                for x in state.layer_sparsity
            ],
            "swaps": sum(r.swaps or 0 for r in state.results),
        }
        rows.append(out)
        print(json.dumps(out), file=sys.stderr, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = {
            "argv": sys.argv,
            "dense_forward_s": dense_fwd,
            "dense_ppl": dense_ppl,
            "runs": rows,
        }
        args.out.write_text(json.dumps(partial, indent=2))
    dense_fwd.append(dense_forward_s(args.model, args.data_dir, args.nsamples, args.seqlen))
    result = {
        "argv": sys.argv,
        "threads": args.threads,
        "dense_forward_s": dense_fwd,
        "dense_ppl": dense_ppl,
        "runs": rows,
    }
    args.out.write_text(json.dumps(result, indent=2))
    md = tables(result)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


def tables(result: dict) -> str:
    dense_s = statistics.median(result["dense_forward_s"])
    runs = result["runs"]
    lines = [f"Dense forward of the calibration windows: {dense_s:.1f} s (median).", ""]

    def key(r):
        return (
            r["method"],
            str(r["sparsity"]),
            r.get("sparsity_profile", "uniform"),
            r.get("refine", "none"),
            r["seed"],
            r["math"],
        )

    by = {key(r): r for r in runs}

    def cell(r):
        work = r["calibrate_s"] + r["prune_s"]
        return f"{r['ppl']['wikitext2']:.2f} | {work / dense_s:.2f}x"

    lines += [
        "| method | sparsity | uniform ppl | uniform time | OWL ppl | OWL time | ppl cut |",
        "|---|---|---|---|---|---|---|",
    ]

    def pairs(sparsities, profile, refine):
        """(method, sparsity, uniform row, variant row) where both ran."""
        for m in ("wanda", "sparsegpt"):
            for s in sparsities:
                u = by.get((m, s, "uniform", "none", 0, "ours"))
                v = by.get((m, s, profile, refine, 0, "ours"))
                if u and v:
                    yield m, s, u, v

    for m, s, u, o in pairs(("0.5", "0.6", "0.7"), "owl", "none"):
        gain = 1 - o["ppl"]["wikitext2"] / u["ppl"]["wikitext2"]
        lines.append(f"| {m} | {s} | {cell(u)} | {cell(o)} | {gain:.1%} |")
    lines += [
        "",
        "| method | sparsity | ppl | time | with DSnoT ppl | time | swaps |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, s, u, d in pairs(("0.6", "0.7", "2:4"), "uniform", "dsnot"):
        lines.append(f"| {m} | {s} | {cell(u)} | {cell(d)} | {d['swaps']} |")
    seeds = [r for r in runs if r["math"] in ("ours", "reference") and "licences" in r["ppl"]]
    if seeds:
        lines += [
            "",
            "| SparseGPT 2:4 | corpus | per seed | mean | spread (min-max) |",
            "|---|---|---|---|---|",
        ]
        for math in ("ours", "reference"):
            for corpus in ("wikitext2", "licences"):
                vals = [r["ppl"][corpus] for r in seeds if r["math"] == math]
                each = ", ".join(f"{v:.2f}" for v in vals)
                lines.append(
                    f"| {math} | {corpus} | {each} | {statistics.mean(vals):.2f} | "
                    f"{min(vals):.2f}-{max(vals):.2f} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
