"""The project's shape: no import cycle between its packages' modules, no probes where a contract exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("raynas", "search_spaces", "trainables", "analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at the top or inside functions."""
    files = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_the_projects_modules():
    graph = import_graph()
    assert graph["raynas.sweep"] >= {"raynas.sweep_search", "raynas.sweep_folder"}  # the graph sees imports
    assert "analysis.results" in graph["raynas.sweep"]  # including those inside functions
    assert cycles(graph) == []


PROBE = re.compile(r'hasattr\((space|self\.space)|inspect\.signature|endswith\("_depth"\)')


def probes(files) -> list[str]:
    """``file:line: text`` of every line of ``files`` that probes where a contract exists."""
    return [f"{path.name}:{number}: {line.strip()}" for path in files
            for number, line in enumerate(path.read_text().splitlines(), 1) if PROBE.search(line)]


def test_no_probes_where_a_contract_exists(tmp_path):
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    assert len(files) > 50  # the packages' files themselves, in a git checkout or not
    assert probes(files) == []
    planted = tmp_path / "planted.py"  # the check can fail: a planted probe is found
    planted.write_text("def depth(space):\n    if hasattr(space, 'depths'):\n        return 1\n")
    assert probes(files + [planted]) == ["planted.py:2: if hasattr(space, 'depths'):"]
