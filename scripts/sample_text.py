"""Write an English calibration/evaluation text offline: the docstrings of Python's standard
library. For a machine with no corpus (no wikitext-2) and no network; upload it as a dataset.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import warnings
from pathlib import Path

MODULES = [
    "argparse",
    "asyncio",
    "collections",
    "concurrent.futures",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "email",
    "enum",
    "functools",
    "http.client",
    "http.server",
    "inspect",
    "io",
    "itertools",
    "json",
    "logging",
    "multiprocessing",
    "os",
    "pathlib",
    "pickle",
    "queue",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "threading",
    "typing",
    "unittest",
    "urllib.request",
    "uuid",
    "zipfile",
]


def docstrings(module_name: str) -> list[str]:
    """The module's docstring and those of its public classes, functions and methods."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    found = [inspect.getdoc(module) or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        found.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            found += [inspect.getdoc(m) or "" for n, m in sorted(vars(obj).items()) if n[0] != "_"]
    return [d.strip() for d in found if len(d.strip()) > 80]


def paragraphs() -> list[str]:
    """Every distinct docstring of MODULES, in order: paragraphs of English prose."""
    seen: set[str] = set()
    parts = []
    with warnings.catch_warnings():  # reading typing.io's docstring warns it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        docs = [doc for name in MODULES for doc in docstrings(name)]
    for doc in docs:
        if doc not in seen:
            seen.add(doc)
            parts.append(doc)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    parts = paragraphs()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {len(parts)} docstrings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
