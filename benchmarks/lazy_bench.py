"""Lazy (one decoder layer at a time) against eager loading: peak RSS and wall time of whole
`pruneserve prune` processes, and whether both write the same checkpoint.

    python benchmarks/lazy_bench.py --model DIR [--repeats 2] [--synthetic-gb 3]

Rows: the model at DIR (SmolLM2-135M fp32), Wanda 2:4, calibration wikitext2 32 x 512,
eager and lazy alternated `--repeats` times (medians); then a synthetic random-init Llama of
about `--synthetic-gb` GB fp32 built by this script in a temporary folder (calibration
`--synthetic-nsamples` x `--synthetic-seqlen`), lazily only unless --synthetic-eager; with
`--synthetic-reconstruct-epochs N` that row runs block-wise reconstruction too. Writes
benchmarks/results/lazy_bench.json (and .md).
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


CGROUP = Path("/sys/fs/cgroup/memory/pruneserve_lazy_bench")  # cgroup v1 memory controller


def in_cgroup(cmd: list[str], limit_mb: int) -> list[str]:
    """`cmd` run inside a cgroup (v1) whose memory (page cache included, no swap) is capped."""
    CGROUP.mkdir(exist_ok=True)
    (CGROUP / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
    swap = CGROUP / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(limit_mb * 2**20))
    return ["sh", "-c", f'echo $$ > {CGROUP}/cgroup.procs && exec "$@"', "sh", *cmd]


def prune(
    args, model: Path, load: str, out: Path, nsamples: int, limit_mb=0, extra=(), seqlen=512
) -> dict:
    cmd = [
        *prune_command(model, "wanda", "2:4", nsamples, seqlen),
        "--data-dir",
        str(args.data_dir),
        "--load",
        load,
        "--output",
        str(out),
        "--json",
        *extra,
    ]
    if limit_mb:
        cmd = in_cgroup(cmd, limit_mb)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(
            f"{model.name} {load} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    report = json.loads(proc.stdout)
    return {
        "load": report["load"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": report["peak_rss_mb"],
        "stages_s": report["stages_s"],
        "sparsity": report["sparsity"],
        "nm_ok": report["nm_ok"],
    }


def same_tensors(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    def read(d: Path) -> dict:
        out = {}
        for f in sorted(d.glob("*.safetensors")):
            out.update(load_file(f))
        return out

    x, y = read(a), read(b)
    return x.keys() == y.keys() and all(torch.equal(t, y[k]) for k, t in x.items())


def build_synthetic(out: Path, gb: float, vocab: int) -> dict:
    """A random-init Llama (hidden 2048, MLP 5632, the tokenizer's vocabulary, tied embeddings)
    with as many layers as make about `gb` GB of fp32 weights, saved in 1 GB shards."""
    code = f"""
import sys, torch, transformers
from pathlib import Path
h, f, v = 2048, 5632, {vocab}
per_layer = 4 * h * h + 3 * h * f + 2 * h
layers = max(1, round(({gb} * 1e9 / 4 - v * h) / per_layer))
cfg = transformers.LlamaConfig(hidden_size=h, intermediate_size=f, vocab_size=v,
    num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=16,
    tie_word_embeddings=True, max_position_embeddings=2048)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(cfg)
model.save_pretrained(sys.argv[1], safe_serialization=True, max_shard_size="1GB")
print(layers, sum(p.numel() for p in model.parameters()))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"building the synthetic model failed:\n{proc.stderr[-3000:]}")
    layers, params = map(int, proc.stdout.split()[-2:])
    return {"layers": layers, "params": params, "gb_fp32": round(params * 4 / 1e9, 2)}


def table(rows: list[dict]) -> str:
    lines = [
        "| model | load | runs | wall s (median) | ratio to eager | peak RSS MB (max) "
        "| same tensors as eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "–" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        same = {True: "yes", False: "NO", None: "–"}[r.get("same_as_eager")]
        lines.append(
            f"| {r['model']} | {r['load']} | {len(r['runs'])} | {r['wall_s']:.1f} "
            f"| {ratio} | {r['peak_rss_mb']:.0f} | {same} |"
        )
    return "\n".join(lines)


def row(model: str, load: str, runs: list[dict]) -> dict:
    return {
        "model": model,
        "load": load,
        "runs": runs,
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic-gb", type=float, default=3.0, help="0 to skip")
    ap.add_argument("--synthetic-nsamples", type=int, default=8)
    ap.add_argument("--synthetic-eager", action="store_true")
    ap.add_argument("--synthetic-seqlen", type=int, default=512)
    ap.add_argument(
        "--synthetic-reconstruct-epochs",
        type=int,
        default=0,
        help="the synthetic rows with block-wise reconstruction (this many epochs)",
    )
    ap.add_argument("--synthetic-dir", type=Path, default=None, help="one built before")
    ap.add_argument(
        "--cgroup-mb", type=int, default=0, help="also the synthetic lazy row under this limit"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/lazy_bench.json")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lazy_bench_"))
    rows, doc = [], {"argv": sys.argv, "threads": args.threads}
    try:
        runs: dict[str, list] = {"eager": [], "lazy": []}
        for k in range(args.repeats):
            for load in ("eager", "lazy") if k % 2 == 0 else ("lazy", "eager"):
                out = tmp / f"{load}{k}"
                runs[load].append(prune(args, args.model, load, out, 32))
        if args.repeats:
            same = same_tensors(tmp / "eager0", tmp / "lazy0")
            eager = row(args.model.name, "eager", runs["eager"])
            lazy = row(args.model.name, "lazy", runs["lazy"])
            lazy["ratio"], lazy["same_as_eager"] = lazy["wall_s"] / eager["wall_s"], same
            rows += [eager, lazy]
            write(args, doc, rows)
        for d in list(tmp.iterdir()):
            shutil.rmtree(d, ignore_errors=True)
        if args.synthetic_gb > 0:
            src = args.synthetic_dir or tmp / "synthetic"
            if not (src / "config.json").is_file():
                vocab = json.loads((args.model / "config.json").read_text())["vocab_size"]
                doc["synthetic"] = build_synthetic(src, args.synthetic_gb, vocab)
                shutil.copy(args.model / "tokenizer.json", src)
                shutil.copy(args.model / "tokenizer_config.json", src)
            gb = sum(f.stat().st_size for f in src.glob("*.safetensors")) / 1e9
            name = f"synthetic Llama {gb:.2f} GB"
            n, seqlen, extra = args.synthetic_nsamples, args.synthetic_seqlen, ()
            if args.synthetic_reconstruct_epochs:
                extra = ("--reconstruct-epochs", str(args.synthetic_reconstruct_epochs))
                name += f", {n} x {seqlen}, reconstruction {extra[1]} epoch(s)"
            if args.cgroup_mb:  # under the limit only: its own peak RSS is reported too
                capped = prune(
                    args, src, "lazy", tmp / "syn_capped", n, args.cgroup_mb, extra, seqlen
                )
                rows.append(
                    row(f"{name}, cgroup memory limit {args.cgroup_mb} MiB", "lazy", [capped])
                )
            else:
                lz = row(
                    name, "lazy", [prune(args, src, "lazy", tmp / "syn_lazy", n, 0, extra, seqlen)]
                )
                if args.synthetic_eager:
                    eg = row(
                        name,
                        "eager",
                        [prune(args, src, "eager", tmp / "syn_eager", n, 0, extra, seqlen)],
                    )
                    lz["ratio"] = lz["wall_s"] / eg["wall_s"]
                    lz["same_as_eager"] = same_tensors(tmp / "syn_eager", tmp / "syn_lazy")
                    rows.append(eg)
                rows.append(lz)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(write(args, doc, rows))


def write(args, doc: dict, rows: list[dict]) -> str:
    doc["rows"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    md = table(rows)
    args.out.with_suffix(".md").write_text(md + "\n")
    return md


if __name__ == "__main__":
    main()
