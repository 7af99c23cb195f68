"""Check a downloaded checkpoint: it loads with transformers and every Linear inside the
decoder layers has the requested sparsity (N:M verified group by group).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def check(path: Path, sparsity: str) -> list[str]:
    """Problems found (empty when the checkpoint is as requested); prints one line per kind."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    n, m = (int(x) for x in sparsity.split(":")) if ":" in sparsity else (0, 0)
    ratio = n / m if m else float(sparsity)
    problems, zeros, total, count = [], 0, 0, 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".layers." not in f".{name}":
            continue
        w = module.weight.detach()  # (out, in)
        count += 1
        zeros += int((w == 0).sum())
        total += w.numel()
        if m:
            per_group = (w.reshape(w.shape[0], -1, m) == 0).sum(-1)  # (out, in/m)
            if bool((per_group < n).any()):
                problems.append(f"{name}: some groups of {m} have fewer than {n} zeros")
        elif (w == 0).float().mean() < ratio - 0.01:
            problems.append(f"{name}: sparsity {(w == 0).float().mean():.3f} < {ratio}")
    kind = f"{n}:{m} in every group" if m else f"{ratio:.0%}"
    print(
        f"{type(model).__name__} loads; {count} decoder Linear layers, "
        f"{zeros / max(total, 1):.2%} zeros ({kind}: {'ok' if not problems else 'BROKEN'})"
    )
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--sparsity", required=True, help='fraction such as 0.5, or "N:M"')
    args = ap.parse_args(argv)
    problems = check(args.path, args.sparsity)
    for p in problems[:5]:
        print(f"error: {p}", file=sys.stderr)
    if len(problems) > 5:
        print(f"error: ... and {len(problems) - 5} more", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
