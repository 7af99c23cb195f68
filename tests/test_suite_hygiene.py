"""Running the tests leaves nothing behind: pytest's temporary directories go when a run passes
(pyproject's tmp_path_retention_policy), and tool caches stay out of the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_passing_run_removes_its_temporary_directories(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_stand_in_corpus.py",
    ]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    left = [p for p in tmp.rglob("*") if not p.is_symlink() and p.is_file()]
    assert left == [], left
    assert [p.name for p in tmp.glob("pytest-of-*/pytest-[0-9]*")] == []


def test_tool_caches_are_not_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (an sdist): nothing is tracked
        return
    caches = (".schemathesis/", ".hypothesis/", ".pytest_cache/", ".ruff_cache/")
    assert [f for f in tracked.stdout.splitlines() if f.startswith(caches)] == []
