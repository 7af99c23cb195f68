"""A method lives in one place, its folder: no code in the engine, the service or the clients
outside that folder branches on the method's name (`method == "movement"`,
`in ("wanda", "sparsegpt")`) or lists method names; what such a branch decided is a fact on the
method's options (worker/engine/methods/<name>/options.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from service.methods import METHODS

REPO = Path(__file__).resolve().parents[4]
SEARCHED = ("worker/engine", "service", "clients")


def own_module(rel: Path) -> str | None:
    """The method a file belongs to: its folder's name (worker/engine/methods/<name>/...), if
    any (the registry and the shared modules next to the folders belong to none)."""
    inside = rel.parts[:3] == ("worker", "engine", "methods") and len(rel.parts) > 4
    return rel.parts[3] if inside else None


def names_in(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and node.value in METHODS:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [n for elt in node.elts for n in names_in(elt)]
    return []


def branches(path: Path, root: Path = REPO) -> list[str]:
    """`file:line: source` of each comparison with, or collection of, method names (a type's
    Literal of names, such as the methods an option may name, is no branch)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root)
    mine = own_module(rel)
    types = {id(n) for s in ast.walk(tree) if isinstance(s, ast.Subscript) for n in ast.walk(s)}
    found = []
    for node in ast.walk(tree):
        if id(node) in types:
            continue
        if isinstance(node, ast.Compare):
            named = [n for side in (node.left, *node.comparators) for n in names_in(side)]
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            named = names_in(node) if len(names_in(node)) >= 2 else []
        else:
            continue
        if any(n != mine for n in named):
            found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_branch_on_a_method_name_outside_its_own_folder():
    found = [b for d in SEARCHED for p in sorted((REPO / d).rglob("*.py")) for b in branches(p)]
    assert not found, "method-name branches (make them facts on the options):\n" + "\n".join(found)


def test_the_check_finds_a_branch_and_a_name_list_but_not_a_fact(tmp_path):
    engine = tmp_path / "worker" / "engine"
    (engine / "methods").mkdir(parents=True)
    probe = engine / "stage.py"
    probe.write_text(
        'def every(method):\n    return 1 if method == "movement" else None\n'
        'ONE_SHOT = ("magnitude", "wanda")\n'
        "def fact(options):\n    return options.prune_every()\n"
    )
    found = [b.split(": ", 1)[1] for b in branches(probe, tmp_path)]
    assert sorted(found) == ["('magnitude', 'wanda')", "method == 'movement'"]
    branch = 'def every(method):\n    return 1 if method == "movement" else None\n'
    own = engine / "methods" / "movement" / "task.py"
    own.parent.mkdir()
    own.write_text(branch)
    assert branches(own, tmp_path) == []
    other = engine / "methods" / "gmp" / "task.py"  # another method's folder
    other.parent.mkdir()
    other.write_text(branch)
    assert [b.split(": ", 1)[1] for b in branches(other, tmp_path)] == ["method == 'movement'"]
    shared = engine / "methods" / "movement.py"  # next to the folders: no method's own
    shared.write_text(branch)
    assert [b.split(": ", 1)[1] for b in branches(shared, tmp_path)] == ["method == 'movement'"]
