"""The import graph, read from the source: no cycle, and every import points down the layers.

Every `import` statement counts: at the top of a module, inside a function, and under
`if TYPE_CHECKING:` alike, because a type-only cycle is still a tangle a reader must hold in their
head. The layers are those of docs/architecture.md; a module may import its own layer or a lower
one. The package root `sparsetune/__init__.py` is the public API and may import anything, but no
module imports from it. A failure prints each offending import with its file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "sparsetune"
ROOT = "sparsetune"

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        tuple(
            f"sparsetune.{name}"
            for name in (
                "atomic",
                "registry",
                "catalog",
                "validation",
                "config",
                "identity",
                "recipe",
                "results",
                "shipped",
                "yamlio",
            )
        ),
    ),
    ("tensors", ("sparsetune.models", "sparsetune.data", "sparsetune.train")),
    ("pruning", ("sparsetune.pruning",)),
    ("export", ("sparsetune.export",)),
    ("trial", ("sparsetune.trial",)),
    ("report", ("sparsetune.report",)),
    ("tracking", ("sparsetune.tracking",)),
    ("search", ("sparsetune.search",)),
    ("app", ("sparsetune.app",)),
    ("cli", ("sparsetune.cli", "sparsetune.__main__")),
]
# The root, as the target of an import: above every layer, so that importing it is always upward.
ROOT_LAYER = len(LAYERS)


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    kind: str  # "top", "function" or "type-only"

    def where(self) -> str:
        path = PACKAGE_DIR.parent / module_path(self.importer)
        return f"{path.relative_to(PACKAGE_DIR.parent)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.kind}, {self.where()})"


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its `__init__.py`)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_names()


def module_path(name: str) -> Path:
    return MODULES[name].relative_to(PACKAGE_DIR.parent)


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


class _ImportCollector(ast.NodeVisitor):
    """Each import statement, with whether it runs at import time, in a function, or only for the
    type checker (`if TYPE_CHECKING:`)."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, str]] = []
        self._function_depth = 0
        self._type_only_depth = 0

    def _kind(self) -> str:
        if self._type_only_depth:
            return "type-only"
        return "function" if self._function_depth else "top"

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._kind()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._kind()))

    def _visit_function(self, node: ast.AST) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self._type_only_depth += 1
            for child in node.body:
                self.visit(child)
            self._type_only_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement loads (a `from` import's names that are modules
    themselves count as those modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    targets = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        targets.append(submodule if submodule in MODULES else source)
    return targets


def import_edges() -> tuple[list[Edge], list[str]]:
    """Every import of one sparsetune module by another, and every import of a sparsetune module
    that does not exist (a stale name after a move)."""
    edges, missing = [], []
    for importer, path in MODULES.items():
        collector = _ImportCollector()
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        for node, kind in collector.found:
            for target in _targets(importer, node):
                if target != ROOT and not target.startswith(ROOT + "."):
                    continue
                edge = Edge(importer, target, node.lineno, kind)
                if target not in MODULES:
                    missing.append(f"{edge}: no such module")
                elif target != importer and edge not in edges:
                    edges.append(edge)
    return edges, missing


def layer_of(module: str) -> int | None:
    """The index in LAYERS of `module`'s layer; None if it belongs to none."""
    if module == ROOT:
        return ROOT_LAYER
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def layer_name(module: str) -> str:
    layer = layer_of(module)
    return "the package root" if layer == ROOT_LAYER else LAYERS[layer][0]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in edges:
        graph[edge.importer].add(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_reader_sees_every_kind_of_import():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import sparsetune.config\n"
        "from sparsetune import registry\n"
        "from . import catalog\n"
        "if TYPE_CHECKING:\n"
        "    from sparsetune.train.loop import fit\n"
        "def f():\n"
        "    from sparsetune.models import MODELS\n"
    )
    collector = _ImportCollector()
    collector.visit(ast.parse(source))
    found = [
        (target, kind)
        for node, kind in collector.found
        for target in _targets("sparsetune.identity", node)
    ]
    assert found == [
        ("typing", "top"),
        ("sparsetune.config", "top"),
        ("sparsetune.registry", "top"),
        ("sparsetune.catalog", "top"),
        ("sparsetune.train.loop", "type-only"),
        ("sparsetune.models", "function"),
    ]
    assert layer_of("sparsetune.train.loop") == 1 and layer_of("sparsetune.cli") == 9


def test_the_cycle_finder_sees_a_type_only_cycle():
    edges = [
        Edge("sparsetune.config", "sparsetune.catalog", 1, "top"),
        Edge("sparsetune.catalog", "sparsetune.config", 2, "type-only"),
        Edge("sparsetune.catalog", "sparsetune.registry", 3, "top"),
    ]
    assert cycles(edges) == [["sparsetune.catalog", "sparsetune.config"]]


def test_every_import_names_a_module_that_exists():
    _, missing = import_edges()
    assert not missing, "imports of missing modules:\n" + "\n".join(missing)


def test_no_import_cycle():
    edges, _ = import_edges()
    found = cycles(edges)
    lines = []
    for component in found:
        members = set(component)
        lines.append("cycle among " + ", ".join(component) + ":")
        lines += [
            f"  {edge}" for edge in edges if edge.importer in members and edge.imported in members
        ]
    assert not found, "\n".join(lines)


def test_every_module_belongs_to_a_layer():
    homeless = [
        f"{module} ({module_path(module)})" for module in MODULES if layer_of(module) is None
    ]
    assert not homeless, (
        "modules in no layer (add them to LAYERS here and to docs/architecture.md):\n"
        + "\n".join(homeless)
    )


def test_every_module_imports_only_its_own_layer_or_lower():
    edges, _ = import_edges()
    upward = [
        f"{edge}: {layer_name(edge.importer)} imports {layer_name(edge.imported)}"
        for edge in edges
        if edge.importer != ROOT
        and None not in (layer_of(edge.importer), layer_of(edge.imported))
        and layer_of(edge.imported) > layer_of(edge.importer)
    ]
    assert not upward, f"{len(upward)} upward imports:\n" + "\n".join(upward)
