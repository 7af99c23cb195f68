"""pruning_report.json: built from what the stages measured, written once beside the checkpoint."""

from __future__ import annotations

import platform
from pathlib import Path

from service.schemas import REPORT_FILE, LayerReport, ModuleReport, PruneReport, PruneSpec
from worker.engine.prune.mask_state import MaskCheck
from worker.engine.prune.pruner import ModuleResult


def versions() -> dict[str, str]:
    import accelerate
    import safetensors
    import torch
    import transformers

    return {
        "pruneserve": "0.1.0",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "safetensors": safetensors.__version__,
    }


def new_report(spec: PruneSpec, device: str) -> PruneReport:
    return PruneReport(spec=spec, versions=versions(), device=device)


def add_masks(report: PruneReport, checks: list[MaskCheck], results: list[ModuleResult]) -> None:
    """Per-module lines and the totals, from the final mask checks and the prune results."""
    measured = {r.name: r for r in results}
    report.modules = [
        ModuleReport(
            name=c.name,
            shape=c.shape,
            sparsity=c.sparsity,
            nm_ok=c.nm_ok,
            rel_error=measured[c.name].rel_error if c.name in measured else None,
            damping=measured[c.name].damping if c.name in measured else None,
            dsnot_swaps=measured[c.name].swaps if c.name in measured else None,
        )
        for c in checks
    ]
    sizes = [c.shape[0] * c.shape[1] for c in checks]
    report.sparsity = sum(c.sparsity * n for c, n in zip(checks, sizes, strict=True)) / max(
        sum(sizes), 1
    )
    if report.spec.parsed_sparsity.is_nm:
        report.nm_ok = bool(checks) and all(c.nm_ok for c in checks)


def add_layers(report: PruneReport, layers, layer_of: dict[str, int]) -> None:
    """The OWL allocation per layer (`layers`: LayerSparsity) with what its masks achieved."""
    pruned: dict[int, float] = {}
    for m in report.modules:
        i = layer_of[m.name]
        pruned[i] = pruned.get(i, 0.0) + m.sparsity * m.shape[0] * m.shape[1]
    report.layers = [
        LayerReport(
            index=x.index,
            outlier_ratio=round(x.outlier_ratio, 6),
            sparsity=round(x.sparsity, 6),
            achieved=round(pruned.get(x.index, 0.0) / max(x.params, 1), 6),
            params=x.params,
        )
        for x in layers
    ]


def write(report: PruneReport, directory: Path) -> None:
    """Atomically (re)write the report file in `directory`."""
    tmp = Path(directory) / (REPORT_FILE + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2))
    tmp.replace(Path(directory) / REPORT_FILE)
