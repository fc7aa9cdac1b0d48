"""The house's shape (STYLE.md): one request's path reads top to bottom, nothing reaches back
up. Read from the source's imports, every one counted (`if TYPE_CHECKING:` ones too, since a
type-only import is still a seam that reaches the other module)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "service"


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The service modules `module` imports: `from .x import y` counts as x.y where that is
    a module, else x."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in known else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


# The runtime and what it runs or serves: none of these may sit in an import cycle.
RUNTIME_SIDE = {
    "service.app",
    "service.cli",
    "service.consumer",
    "service.executor",
    "service.grace",
    "service.metrics",
    "service.runtime",
    "service.serving",
    "service.tasks",
}


def api_modules(edges: dict[str, set[str]]) -> Iterator[str]:
    return (m for m in edges if m.startswith("service.api."))


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycle_passes_through_the_runtime_its_parts_or_the_routes() -> None:
    edges = graph()
    watched = RUNTIME_SIDE | set(api_modules(edges))
    assert [sorted(c) for c in cycles(edges) if c & watched] == []


def test_consumers_metrics_and_routes_never_import_the_runtime() -> None:
    """They are given what they use (consumer.QueueWork, metrics.LiveState, api.services):
    only create_app unpacks the runtime, and cli runs it."""
    edges = graph()
    importers = sorted(m for m, deps in edges.items() if "service.runtime" in deps)
    assert importers == ["service", "service.app", "service.cli"]
