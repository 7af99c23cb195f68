"""Plans for Llama-3.1-8B and -70B from their config.json (no weights): one-shot, block-wise
reconstruction and recovery on 1 x 80 GiB and 8 x 80 GiB. Prints a Markdown table and writes
benchmarks/results/plan_llama31.json.

    python benchmarks/plan_table.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.planner.devices import parse_devices  # noqa: E402
from service.planner.plan import plan  # noqa: E402
from service.planner.shape import read_config  # noqa: E402
from service.schemas import PruneSpec  # noqa: E402

GiB = 2**30
BASE = {"method": "sparsegpt", "sparsity": "2:4", "calibration": {"nsamples": 128, "seqlen": 2048}}
RECOVERY = {"steps": 1000, "seqlen": 2048, "batch_size": 16, "micro_batch": 4}
JOBS = {  # name -> (extra spec fields, reconstruct)
    "one-shot (SparseGPT 2:4)": ({}, False),
    "reconstruction": ({}, True),
    "recovery (KL, 16 x 2048 per step)": ({"recovery": RECOVERY}, False),
}
STAGE = {"one-shot (SparseGPT 2:4)": "prune", "reconstruction": "reconstruct"}


def rows() -> list[dict]:
    out = []
    for size in ("8b", "70b"):
        shape = read_config(ROOT / "benchmarks" / "configs" / f"llama-3.1-{size}")
        for job, (extra, reconstruct) in JOBS.items():
            spec = PruneSpec(model=f"meta-llama/Llama-3.1-{size.upper()}", **BASE, **extra)
            for devices in ("1x80GiB", "8x80GiB"):
                p = plan(spec, shape, parse_devices(devices), reconstruct=reconstruct)
                stage = next(s for s in p.stages if s.name == STAGE.get(job, "recover"))
                out.append(
                    {
                        "model": f"Llama-3.1-{size.upper()}",
                        "job": job,
                        "devices": devices,
                        "plan": p.model_dump(mode="json"),
                        "stage": stage.model_dump(mode="json"),
                    }
                )
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| model | job | devices | stage | peak GiB/device | host GiB | fits | with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["stage"]
        verdict = "yes" if s["fits"] else "no: " + (s["note"] or "")
        lines.append(
            f"| {r['model']} | {r['job']} | {r['devices']} | {s['name']} | "
            f"{s['peak_bytes_per_device'] / GiB:.1f} | {s['host_bytes'] / GiB:.0f} | {verdict} | "
            f"{', '.join(s['changes']) or 'as asked'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    results = rows()
    out = ROOT / "benchmarks" / "results" / "plan_llama31.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
