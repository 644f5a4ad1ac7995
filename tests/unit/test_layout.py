"""The layering of ``src/handover`` (README, Layout): entry points import no adapter (``bootstrap`` is the one
place that picks adapters), the service layer and the domain import neither adapters nor entry points, the domain
imports no driver, and no module imports itself through others (no import cycle, function-level imports
included; imports under ``if TYPE_CHECKING:`` do not run and are left out)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "handover"


def module_files(root: Path = SRC) -> dict[str, Path]:
    """``handover.x.y`` -> its file (packages by their ``__init__.py``)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (at module level or in a function), not those under TYPE_CHECKING."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from a import b`` is ``a.b`` when that is a module)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        out.update(t for t in targets if t in modules and t != name)
    return out


def external_imports(path: Path) -> set[str]:
    """The top-level packages outside the project that a module imports (where it runs)."""
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out - {PACKAGE}


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(module_files())


def test_the_walk_sees_the_imports(graph: dict[str, set[str]]) -> None:
    """The graph is the real one: known edges are there (function-level ones too), TYPE_CHECKING ones are not."""
    assert "handover.service.engine" in graph["handover.bootstrap"]
    assert "handover.adapters.sql" in graph["handover.bootstrap"]  # imported inside bootstrap()
    assert "handover.adapters.kafka_worker" in graph["handover.bootstrap"]  # inside kafka_worker()
    assert "handover.entrypoints.api_common" in graph["handover.entrypoints.console"]
    assert "handover.adapters.kafka_worker" in graph["handover.adapters.kafka_redrive"]
    assert {"sqlalchemy", "confluent_kafka"} <= external_imports(module_files()["handover.bootstrap"])


def test_no_entry_point_imports_an_adapter(graph: dict[str, set[str]]) -> None:
    found = {
        name: sorted(t for t in targets if t.startswith("handover.adapters"))
        for name, targets in graph.items()
        if name.startswith("handover.entrypoints")
    }
    assert {k: v for k, v in found.items() if v} == {}


DRIVERS = {"sqlalchemy", "psycopg", "confluent_kafka", "cassandra", "neo4j", "httpx"}


@pytest.mark.parametrize("layer", ["handover.entrypoints", "handover.domain", "handover.service"])
def test_no_driver_outside_adapters(layer: str) -> None:
    """Store and broker drivers are the adapters' (and bootstrap's, which picks them)."""
    found = {
        name: sorted(external_imports(path) & DRIVERS)
        for name, path in module_files().items()
        if name.startswith(layer)
    }
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize("layer", ["handover.domain", "handover.service"])
def test_inner_layers_import_no_outer_one(graph: dict[str, set[str]], layer: str) -> None:
    outer = ("handover.adapters", "handover.entrypoints", "handover.bootstrap")
    found = {
        name: sorted(t for t in targets if t.startswith(outer))
        for name, targets in graph.items()
        if name.startswith(layer)
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_a_cycle_is_found_and_a_type_checking_import_is_not(tmp_path: Path) -> None:
    """The checks can fail: a two-module circle through a function-level import is reported; the same import
    under ``if TYPE_CHECKING:`` is not an edge."""
    package = tmp_path / PACKAGE / "entrypoints"
    package.mkdir(parents=True)
    (tmp_path / PACKAGE / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from handover.entrypoints import b\n")
    (package / "b.py").write_text("def f():\n    from handover.entrypoints.a import x\n")
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import handover.entrypoints.a\n"
    (package / "c.py").write_text(guarded)
    graph = import_graph(module_files(tmp_path))
    assert cycles(graph) == [["handover.entrypoints.a", "handover.entrypoints.b"]]
    assert graph["handover.entrypoints.c"] == set()
