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


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` reaches through its imports, one or more steps away."""
    seen: set[str] = set()
    todo = list(edges[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges[module])
    return seen


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: those that reach each
    other (a few hundred modules, so reachability from each is cheap enough)."""
    reach = {v: reachable(edges, v) for v in edges}
    found: list[set[str]] = []
    for v in edges:
        component = {v} | {w for w in reach[v] if v in reach[w]}
        if len(component) > 1 and component not in found:
            found.append(component)
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


def test_the_cycle_finder_finds_each_cycle_once_and_none_in_a_chain() -> None:
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set()}
    assert cycles(edges) == [{"a", "b"}, {"c", "d", "e"}]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_anywhere_in_the_service_package() -> None:
    """Module-level and TYPE_CHECKING imports alike: a cycle among any modules is two parts
    that cannot be read, tested or changed apart."""
    assert [sorted(c) for c in cycles(graph())] == []


# STYLE.md: a module longer than this is split into parts with names of their own.
MAX_MODULE_LINES = 300


def test_no_module_is_longer_than_the_style_allows() -> None:
    lengths = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in modules().items()}
    assert {m: n for m, n in lengths.items() if n > MAX_MODULE_LINES} == {}
