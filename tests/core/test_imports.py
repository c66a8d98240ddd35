"""No import circle in quanta_core: the graph of its modules' imports (read with ``ast``, imports
inside functions included) has no cycle, so every import could stand at the top of its module and
any module imports first, alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("quanta_core",)


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path, packages) -> dict[str, Path]:
    return {_module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def _targets(node: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The project modules an ``import`` / ``from … import`` node of module ``name`` loads."""
    if isinstance(node, ast.Import):
        found = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}".rstrip(".")
        # `from pkg import sub` loads pkg.sub when sub is a module, else a name of pkg
        found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [m for m in found if m in modules]


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """Module → the project modules it imports (anywhere in its body)."""
    modules = _modules(root, packages)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(node, name, is_package, modules) if t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_imports_inside_functions(tmp_path):
    (tmp_path / "p" / "s").mkdir(parents=True)
    (tmp_path / "p" / "__init__.py").write_text("from p.s import b\n")
    (tmp_path / "p" / "s" / "__init__.py").write_text("")
    (tmp_path / "p" / "s" / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "p" / "s" / "b.py").write_text("import numpy\nfrom p.s.a import f\n")
    graph = import_graph(tmp_path, ("p",))
    assert graph == {"p": {"p.s.b"}, "p.s": set(), "p.s.a": {"p.s.b"}, "p.s.b": {"p.s.a"}}
    assert find_cycle(graph) == ["p.s.b", "p.s.a", "p.s.b"]
    assert len(import_graph()) >= 60  # every module of quanta_core


def test_no_import_circle_in_quanta_core():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


@pytest.mark.parametrize("module", ["quanta_core.similarity.tiles", "quanta_core.similarity.memory",
                                    "quanta_core.similarity.exact"])
def test_a_similarity_module_imports_first_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
