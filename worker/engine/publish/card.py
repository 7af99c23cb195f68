"""README.md of a pruned checkpoint, in the Hugging Face model-card format: YAML metadata
(base model, library, pipeline, tags, license) and a body made from the report alone."""

from __future__ import annotations

import json
from pathlib import Path

from service.schemas import PruneReport

CARD_FILE = "README.md"
STAGE_NAMES = {
    "dense": "dense (before pruning)",
    "prune": "after pruning",
    "train": "after the method's training",
    "recover": "after recovery",
}


def source_metadata(source: Path | None) -> dict:
    """The source model's own card metadata (its README's front matter), or {}."""
    readme = Path(source) / CARD_FILE if source else None
    if readme is None or not readme.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(readme).data.to_dict()
    except (ValueError, OSError):  # a README without (valid) front matter
        return {}


def base_model(name: str) -> str:
    """The hub id a user named, or a local directory's name (the hub id is unknown then)."""
    local = name.startswith(("/", ".", "~")) or Path(name).is_absolute()
    return Path(name).name if local else name


def metadata(report: PruneReport, source_meta: dict) -> dict:
    spec = report.spec
    s = spec.parsed_sparsity
    pattern = f"{s.n}:{s.m}" if s.is_nm else "unstructured"
    tags = ["pruned", "sparse", pattern, spec.method, "pruneserve"]
    if spec.sparsity_profile != "uniform":
        tags.append(spec.sparsity_profile)
    data = {
        "base_model": base_model(spec.model),
        "library_name": "transformers",
        "pipeline_tag": source_meta.get("pipeline_tag", "text-generation"),
        "tags": tags,
    }
    for key in ("license", "license_name", "license_link", "language"):
        if source_meta.get(key):
            data[key] = source_meta[key]
    return data


def front_matter(data: dict) -> str:
    from huggingface_hub import ModelCardData

    return f"---\n{ModelCardData(**data).to_yaml()}\n---\n"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in clean),
        "",
    ]


def method_section(report: PruneReport) -> list[str]:
    spec = report.spec
    rows = [
        ["method", spec.method],
        ["sparsity", str(spec.sparsity)],
        ["sparsity profile", spec.sparsity_profile],
        ["refinement", spec.refine],
    ]
    rows += [[f"option {k}", json.dumps(v)] for k, v in sorted(spec.options.items())]
    if spec.skip:
        rows.append(["kept dense", ", ".join(spec.skip)])
    nm = "not an N:M pattern"
    if report.nm_ok is not None:
        nm = "every pruned matrix satisfies it" if report.nm_ok else "BROKEN in some matrices"
    rows += [
        ["sparsity over the pruned modules", _pct(report.sparsity)],
        ["sparsity over all decoder weights", _pct(report.decoder_sparsity)],
        ["N:M pattern", nm],
        ["architecture", f"{report.architecture}, {report.n_layers} layers, {report.dtype}"],
    ]
    return ["## Method", "", *_table(["", ""], rows)]


def data_section(report: PruneReport) -> list[str]:
    c = report.spec.calibration
    lines = [
        "## Data",
        "",
        f"- calibration: {c.dataset}, {c.nsamples} windows of {c.seqlen} tokens (seed {c.seed})",
    ]
    for t in report.training:
        lines.append(
            f"- {t.stage}: {t.dataset} ({t.split}), {t.steps} steps x {t.batch_size} x "
            f"{t.seqlen} tokens, objective {t.objective}, trained: {t.trainable}"
        )
    return [*lines, ""]


def quality_section(report: PruneReport) -> list[str]:
    rows = []
    for label, ppl in (("perplexity", report.perplexity), ("held-out", report.heldout)):
        if ppl is None:
            continue
        stages = {"dense": ppl.dense, **ppl.after}
        for stage, value in stages.items():
            if value is not None:
                rows.append(
                    [
                        f"{label} ({ppl.dataset}, {ppl.windows} x {ppl.seqlen})",
                        STAGE_NAMES.get(stage, stage),
                        f"{value:.3f}",
                    ]
                )
    if not rows:
        return ["## Evaluation", "", "Not evaluated (the spec had no `evaluation`).", ""]
    return ["## Evaluation", "", *_table(["metric", "stage", "value"], rows)]


def samples_section(report: PruneReport) -> list[str]:
    s = report.samples
    if s is None:
        return []
    lines = ["## Sample generations", "", f"Greedy, {s.tokens} new tokens at most.", ""]
    for i, prompt in enumerate(s.prompts):
        lines += [f"**{prompt}**", ""]
        for stage, texts in s.after.items():
            lines.append(f"- {STAGE_NAMES.get(stage, stage)}: {json.dumps(texts[i])}")
        lines.append("")
    return lines


def usage_section(report: PruneReport) -> list[str]:
    spec = report.spec.model_dump(mode="json", exclude_defaults=True)
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    return [
        "## How to use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/directory")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/directory")',
        "```",
        "",
        "The pruned weights are stored as zeros in a dense safetensors checkpoint; any "
        "transformers version that loads the base model loads this one.",
        "",
        "## Reproduce",
        "",
        "The spec (`pruning_report.json` holds it whole, with every measurement):",
        "",
        "```json",
        json.dumps(spec, indent=2),
        "```",
        "",
        f"Made with {versions}.",
        "",
    ]


def render(report: PruneReport, source: Path | None = None) -> str:
    """The whole README.md for the checkpoint `report` describes."""
    spec = report.spec
    title = f"# {base_model(spec.model)}, pruned to {spec.sparsity} with {spec.method}"
    body = [title, "", f"A sparse version of `{spec.model}` made by pruneserve.", ""]
    for part in (method_section, data_section, quality_section, samples_section, usage_section):
        body += part(report)
    if report.warnings:
        body += ["## Warnings", "", *(f"- {w}" for w in report.warnings), ""]
    return front_matter(metadata(report, source_metadata(source))) + "\n".join(body)
