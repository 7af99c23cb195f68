"""What the contract's parts share: limits, allowed values, the revision check, where a
checkpoint is written, how validation errors read, and the strict base model."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from pydantic.config import JsonDict

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
NAMED_DATASETS = ("wikitext2", "c4")
REPORT_FILE = "pruning_report.json"  # written next to every pruned checkpoint
# What the schema says sparsity may be; the server accepts a subset (0 < N < M, 0 < x < 1).
SPARSITY_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": r"^\s*(?:[0-9]+\s*:\s*0*(?:2|4|8|16|32)|0*\.[0-9]+)\s*$"},
    ]
}
_FIELD_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)?): ")
_LOC_ROOTS = ("body", "query", "path", "header", "form", "file", "cookie")
MAX_NAME = 255  # one path component on common filesystems; model, revision, datasets
MAX_PATH = 4096  # a local dataset file (local runs)
MAX_SKIP = 256
MAX_PROMPTS = 8  # sample generations: prompts per job
MAX_PROMPT_CHARS = 500
MAX_SAMPLE_TOKENS = 128  # greedy tokens per prompt and stage
DEFAULT_PROMPTS = (
    "The capital of France is",
    "Once upon a time, there was a",
    "The most important thing to know about water is",
)
# git check-ref-format: no "..", "@{", "//", control chars, space ~ ^ : ? * [ \ ; no component
# starting with "." or ending with ".lock"; no leading or trailing "/" and no trailing "."
_REF_BAD = re.compile(r"\.\.|@\{|//|[\x00-\x20\x7f~^:?*\[\\]|(^|/)\.|\.lock(/|$)|^/|/$|\.$|^@$")
REVISION_ALLOWED = "a branch or tag name (git ref rules) or a 7-40 hex commit id, <= 255 chars"


def check_revision(revision: str) -> str:
    """`revision` when it is a safe hub revision; ValueError naming what is allowed otherwise.

    Never a path: the hub cache reads refs/<revision> as a file.
    """
    if not revision or len(revision) > MAX_NAME or _REF_BAD.search(revision):
        shown = revision if len(revision) <= 80 else revision[:80] + "..."
        raise ValueError(f"revision {shown!r} is not valid; allowed: {REVISION_ALLOWED}")
    return revision


def partial_dir(output: Path) -> Path:
    """Where a checkpoint is written before it is complete; renamed to `output` at the end."""
    return output.with_name(output.name + ".partial")


def resume_dir(output: Path) -> Path:
    """Where a running job keeps what it needs to resume (training checkpoints); removed when
    the job ends."""
    return output.with_name(output.name + ".resume")


def describe_errors(errors: list[dict]) -> list[tuple[str | None, str]]:
    """pydantic errors -> (field such as "calibration.nsamples", message) pairs, as the API
    and the CLI print them."""
    out: list[tuple[str | None, str]] = []
    for err in errors:
        if err.get("type") == "json_invalid":  # loc holds a character offset, not a field
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            out.append(("body", f"not valid JSON ({reason})"))
            continue
        parts = [str(p) for p in err.get("loc", ())]
        if parts and parts[0] in _LOC_ROOTS:
            parts = parts[1:]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        named = _FIELD_PREFIX.match(msg) if not parts else None  # a spec-level check names it
        out.append((named.group(1) if named else ".".join(parts) or None, msg))
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
