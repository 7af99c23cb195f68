"""Model names users may give: a hub id `org/name`, or a directory name under MODELS_DIR.

Never a path: `..`, absolute paths, backslashes and symlinks leading out are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
ALLOWED = "a hub id such as org/name, or the name of a model directory under MODELS_DIR"


def resolve_model(name: str, models_dir: Path | None) -> Path | None:
    """The local model directory for `name` (under `models_dir`, when there is one), or None
    for a hub id; ValueError when refused."""
    if "\\" in name or name.startswith(("/", "~")) or ".." in name.split("/"):
        raise ValueError(f"model {name!r} is a path; allowed: {ALLOWED}")
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"model {name!r} is not a valid name; allowed: {ALLOWED}")
    candidate = Path(models_dir) / name if models_dir is not None else None
    if candidate is not None and (candidate.is_symlink() or candidate.exists()):
        root = Path(models_dir).resolve()
        target = candidate.resolve()
        if not target.is_relative_to(root) or target == root:
            raise ValueError(f"model {name!r} resolves outside MODELS_DIR; allowed: {ALLOWED}")
        if not target.is_dir():
            raise ValueError(f"model {name!r} is not a model directory; allowed: {ALLOWED}")
        return target
    if "/" in name:
        return None
    where = "is not under MODELS_DIR and " if models_dir is not None else ""
    raise ValueError(f"model {name!r} {where}is not a hub id (org/name); allowed: {ALLOWED}")


def local_models(models_dir: Path) -> list[str]:
    """Names of the model directories users may name (for error messages)."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
