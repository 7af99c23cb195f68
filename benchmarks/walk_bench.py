"""One-shot pruning against the reference loop and a dense forward, each in its own process.

    python benchmarks/walk_bench.py --model DIR [--nsamples 32 --seqlen 512 --threads 2]

Rows (each a fresh `python` process, so peak RSS and page faults are that row's own, read
from getrusage at its end): a dense Hugging Face forward of the calibration windows through
the decoder (`model.model`, batches of the walker's size); ours (`worker.engine.run.run`, as
`pruneserve prune` runs it) with eager and lazy loading; the reference loop
(benchmarks/reference_walk.py, a transcription of locuslab/wanda's) on the same windows.
Wanda and SparseGPT 2:4, fp32 on the CPU, wikitext2 valid windows (seed 0). Ours and the
reference must agree on the masks (Wanda: identical; SparseGPT: sparsity only, its update
order differs). Writes benchmarks/results/walk_bench.json (and .md) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_args import parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = [
    "dense",
    "ours:wanda:eager",
    "ours:wanda:lazy",
    "reference:wanda",
    "ours:sparsegpt:eager",
    "ours:sparsegpt:lazy",
    "reference:sparsegpt",
]


def windows(args, tokenizer):
    from worker.engine.data import calibration

    src = calibration.resolve_dataset("wikitext2", "calibration", args.data_dir)
    return calibration.calibration_ids(tokenizer, "wikitext2", src, args.nsamples, args.seqlen, 0)


def dense(args) -> dict:
    import torch

    from worker.engine.model.model_io import load_model
    from worker.engine.walk.walker import batch_size, spans

    model, tok = load_model(args.model, "float32")
    ids = windows(args, tok)
    batch = batch_size(args.seqlen, args.nsamples)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s, e in spans(ids.shape[0], batch):
            model.model(input_ids=ids[s:e], use_cache=False)
    return {"prune_s": time.perf_counter() - t0}


def ours(args, method: str, load: str) -> dict:
    from service.schemas import CalibrationSpec, PruneSpec
    from worker.engine.run import run

    cal = CalibrationSpec(dataset="wikitext2", nsamples=args.nsamples, seqlen=args.seqlen, seed=0)
    spec = PruneSpec(
        model=str(args.model),
        method=method,
        sparsity="2:4",
        calibration=cal,
        device="cpu",
        dtype="float32",
        load=load,
    )
    out = args.tmp / f"{method}-{load}"
    report = run(spec, out, data_dir=args.data_dir)
    zeros = zeros_of(out)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "prune_s": report.stages_s["prune"],
        "stages_s": report.stages_s,
        "load": report.load,
        "zeros": zeros,
    }


def zeros_of(directory: Path) -> dict[str, list[int]]:
    """Per decoder Linear weight of a saved checkpoint: its zero entries' flat indices hashed."""
    from safetensors import safe_open

    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(f, "pt") as fh:
            for k in fh.keys():  # noqa: SIM118 (safe_open is no dict)
                if ".layers." in k and k.endswith("proj.weight"):
                    out[k] = mask_digest(fh.get_tensor(k) == 0)
    return out


def mask_digest(mask) -> list[int]:
    """(pruned count, a hash of where) for a bool mask: equal masks give equal digests."""
    import hashlib

    data = mask.reshape(-1).numpy().tobytes()
    return [int(mask.sum()), int(hashlib.sha256(data).hexdigest()[:12], 16)]


def reference(args, method: str) -> dict:
    from benchmarks import reference_walk
    from worker.engine.model.model_io import load_model

    model, tok = load_model(args.model, "float32")
    ids = windows(args, tok)
    t0 = time.perf_counter()
    reference_walk.prune(model, ids, method)
    elapsed = time.perf_counter() - t0
    zeros = {
        k: mask_digest(v == 0)
        for k, v in model.state_dict().items()
        if ".layers." in k and k.endswith("proj.weight")
    }
    return {"prune_s": elapsed, "zeros": zeros}


def child(args) -> None:
    kind, *rest = args.child.split(":")
    t0 = time.perf_counter()
    if kind == "dense":
        row = dense(args)
    elif kind == "ours":
        row = ours(args, *rest)
    else:
        row = reference(args, *rest)
    use = resource.getrusage(resource.RUSAGE_SELF)
    row.update(
        row=args.child,
        process_s=time.perf_counter() - t0,
        peak_rss_mib=use.ru_maxrss / 1024,
        minor_faults=use.ru_minflt,
        cpu_s=use.ru_utime + use.ru_stime,
    )
    print(json.dumps(row))


def run_row(args, name: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--model",
        str(args.model),
        "--data-dir",
        str(args.data_dir),
        "--nsamples",
        str(args.nsamples),
        "--seqlen",
        str(args.seqlen),
        "--threads",
        str(args.threads),
        "--tmp",
        str(args.tmp),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_masks(rows: dict) -> None:
    """Our rows get `same_masks_as_reference`; every row with masks, its pruned count."""
    zeros = {name: r.pop("zeros") for name, r in rows.items() if "zeros" in r}
    for name, z in zeros.items():
        rows[name]["pruned_weights"] = sum(c for c, _ in z.values())
        ref = zeros.get(f"reference:{name.split(':')[1]}")
        if name.startswith("ours") and ref is not None:
            rows[name]["same_masks_as_reference"] = z == ref


def table(doc: dict) -> str:
    rows = doc["rows"]
    dense_s = rows["dense"]["prune_s"]
    lines = [
        f"Dense forward of the {doc['nsamples']} x {doc['seqlen']} windows: {dense_s:.1f} s"
        f" (peak RSS {rows['dense']['peak_rss_mib']:.0f} MiB, "
        f"{rows['dense']['minor_faults'] / 1e6:.2f} M minor faults).",
        "",
        "| row | prune s | / dense fwd | reference / ours | peak RSS MiB | minor faults "
        "| masks = reference |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        if name == "dense":
            continue
        method = name.split(":")[1]
        ref = rows.get(f"reference:{method}")
        speed = f"{ref['prune_s'] / r['prune_s']:.2f}x" if ref and name != ref["row"] else "–"
        same = {True: "yes", False: "NO", None: "–"}[r.get("same_masks_as_reference")]
        faults = r["minor_faults"] / 1e6
        lines.append(
            f"| {name} | {r['prune_s']:.1f} | {r['prune_s'] / dense_s:.2f}x | {speed} "
            f"| {r['peak_rss_mib']:.0f} | {faults:.2f} M | {same} |"
        )
    lazy_eager = []
    for method in ("wanda", "sparsegpt"):
        e, lz = rows.get(f"ours:{method}:eager"), rows.get(f"ours:{method}:lazy")
        if e and lz:
            lazy_eager.append(f"{method} {lz['prune_s'] / e['prune_s']:.2f}")
    if lazy_eager:
        lines += ["", "Lazy / eager prune time: " + ", ".join(lazy_eager) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=",".join(ROWS), help="comma list of rows")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/walk_bench.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        child(args)
        return
    names = args.only.split(",")
    doc = {
        "argv": sys.argv,
        "nsamples": args.nsamples,
        "seqlen": args.seqlen,
        "threads": args.threads,
        "machine": machine(),
        "rows": {},
    }
    args.tmp = Path(tempfile.mkdtemp(prefix="walk_bench_"))
    try:
        for name in ["dense"] + [n for n in names if n != "dense"]:
            r = run_row(args, name)
            doc["rows"][name] = r
            print(f"{name}: {r['prune_s']:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)
    ordered = {n: doc["rows"][n] for n in ROWS if n in doc["rows"]}
    compare_masks(ordered)
    doc["rows"] = ordered
    md = table(doc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    args.out.with_suffix(".md").write_text(md + "\n")
    print(md)


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"


if __name__ == "__main__":
    main()
