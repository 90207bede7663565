"""The package's layout: no import cycles, the documented import paths, small modules.

The import graph is read from the source with ``ast`` (nothing is imported for it): every
``import`` and ``from ... import`` of a module counts, at module level, inside functions and
under ``TYPE_CHECKING`` alike, with relative imports resolved. ``from pkg import name`` is an
import of the submodule ``pkg.name`` when there is one, else of ``pkg``; an import of a
package is an import of its ``__init__.py``. Migrations are left out.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "repid_django"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_LINES = 400


def _module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name to file, for every module of the package but its migrations."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    targets = _targets(module, path, modules)
    return {target for target in targets if target in modules and target != module}


def _targets(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module (of the package or not) that ``module`` imports, by absolute name."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    return targets


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module to the package's modules it imports."""
    modules = _module_files(root)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of ``group`` (breadth first)."""
    start = min(group)
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & group):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle in {sorted(group)}")


def test_the_import_graph_is_read() -> None:
    graph = import_graph()
    assert "repid_django.engine.worker.worker" in graph["repid_django.engine.worker"]
    assert "repid_django.tasks_backend.backend" in graph["repid_django.backend"]
    assert not any("migrations" in name for name in graph)


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    sources = {
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .sub import Thing\n"
            "def later():\n    from . import b\n"
            "A = 1\n"
        ),
        "pkg/b.py": "import pkg.sub.c as c\nimport os\n",
        "pkg/sub/__init__.py": "from ..a import A\nThing = A\n",
        "pkg/sub/c.py": "from .. import b, A\nfrom pkg.sub import Thing\n",
        "pkg/migrations/0001_initial.py": "from pkg import b\n",
    }
    for name, text in sources.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    graph = import_graph(tmp_path / "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub", "pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.a"},
        "pkg.sub.c": {"pkg.b", "pkg", "pkg.sub"},
    }
    assert find_cycles(graph) == [["pkg", "pkg.a", "pkg.b", "pkg.sub.c", "pkg"]]


def test_the_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_engine_imports_neither_django_nor_the_django_side() -> None:
    modules = _module_files()
    engine = f"{PACKAGE}.engine"
    found = []
    for name, path in modules.items():
        if name != engine and not name.startswith(f"{engine}."):
            continue
        for target in sorted(_targets(name, path, modules)):
            top = target.split(".")[0]
            outside = top == PACKAGE and target != engine and not target.startswith(f"{engine}.")
            if top in {"django", "channels", "daphne", "asgiref"} or outside:
                found.append(f"{name} imports {target}")
    assert not found, "the engine must not depend on Django:\n" + "\n".join(found)


def _public_paths() -> Iterator[tuple[str, str]]:
    yield "repid_django.backend", "RepidTaskBackend"
    yield "repid_django.tasks_backend", "RepidTaskBackend"
    yield "repid_django.engine.brokers.redis", "RedisMessageBroker"
    yield "repid_django.engine.brokers.memory", "InMemoryMessageBroker"
    yield "repid_django.engine.worker", "Worker"
    yield "repid_django.mirror", "OrmMirror"
    for name in ("requeue_dead", "purge_dead", "retry_job", "cancel_job", "purge_queue"):
        yield "repid_django.ops", name
    yield "repid_django.ops", "queue_depths"
    yield "repid_django.depths", "queue_depths"
    for name in ("ActorFunction", "BoundJob", "actor", "enqueue_on_commit", "get_connection"):
        yield "repid_django.shortcuts", name
    for name in ("WEBSOCKET_PATH", "websocket_application", "websocket_urlpatterns"):
        yield "repid_django.monitor.routing", name


@pytest.mark.parametrize(("module", "name"), list(_public_paths()))
def test_documented_import_paths(module: str, name: str) -> None:
    found = importlib.import_module(module)
    assert getattr(found, name) is not None, f"{module}.{name}"


def test_the_package_exports_its_all() -> None:
    import repid_django as repid

    assert repid.__all__
    missing = [name for name in repid.__all__ if not hasattr(repid, name)]
    assert not missing, f"repid_django.__all__ names missing attributes: {missing}"


def test_exported_names_of_modules_exist() -> None:
    for module in ("repid_django.monitor.routing", "repid_django.shortcuts"):
        found = importlib.import_module(module)
        names = getattr(found, "__all__", [])
        assert names, f"{module} has no __all__"
        missing = [name for name in names if not hasattr(found, name)]
        assert not missing, f"{module}.__all__ names missing attributes: {missing}"


def test_modules_are_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _module_files().items()}
    large = sorted(f"{name} ({lines} lines)" for name, lines in sizes.items() if lines > MAX_LINES)
    assert not large, f"modules over {MAX_LINES} lines: " + ", ".join(large)
