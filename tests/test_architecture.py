"""Imports flow one way: the package layers of ``docs/ARCHITECTURE.md``, checked by parsing the code.

Every ``import`` of a ``vmgga`` module in ``vmgga/**.py`` is read with :mod:`ast` (function-level
and ``TYPE_CHECKING`` imports included, since they are dependencies too). A module belongs to the
unit named by its first component below ``vmgga`` (``vmgga.field.warp`` -> ``field``; root modules
such as ``vmgga.frames`` are units of their own). The test fails on

* an import from a lower layer into a higher one (the layer table is the block between the
  ``layers`` markers in ``docs/ARCHITECTURE.md``, lowest first), and
* any cycle between units, found independently of the table.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vmgga"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"

#: What ``from vmgga import NAME`` / ``vmgga.NAME`` means for names that are not modules: the
#: package's own exports (``vmgga/__init__.py``, eager or lazy). The package namespace itself
#: (``__init__``) is the top layer: it re-exports :func:`vmgga.register`.
ROOT_EXPORTS = {
    "register": "api",
    "write_outputs": "api",
    "RegistrationResult": "result",
    "RegistrationConfig": "config",
    "make_config": "config",
    "__version__": "version",
}


def read_layers(text: str) -> list[set[str]]:
    """The layer table: one line per layer, lowest first, between the ``layers`` markers."""
    block = re.search(r"<!-- layers -->\s*```\w*\n(.*?)```\s*<!-- /layers -->", text, re.S)
    if block is None:
        raise AssertionError("docs/ARCHITECTURE.md has no <!-- layers --> block")
    lines = [line.split("#", 1)[0].split() for line in block.group(1).splitlines()]
    return [set(words) for words in lines if words]


def unit_of(module: str) -> str:
    """``vmgga.field.warp`` -> ``field``; ``vmgga`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _root_name(name: str, where: Path) -> str:
    """The unit a name taken from the ``vmgga`` package itself comes from."""
    if _is_module(f"vmgga.{name}"):
        return name
    if name not in ROOT_EXPORTS:
        raise AssertionError(f"{where}: vmgga.{name} is neither a module nor a known export of vmgga")
    return ROOT_EXPORTS[name]


def imported_units(path: Path) -> set[str]:
    """Units of ``vmgga`` that the file at ``path`` imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    units: set[str] = set()
    bare_root = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "vmgga":
                    bare_root = True
                elif alias.name.startswith("vmgga."):
                    units.add(unit_of(alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "vmgga":
                units.update(_root_name(alias.name, path) for alias in node.names)
            elif node.module.startswith("vmgga."):
                units.add(unit_of(node.module))
    if bare_root:  # ``import vmgga`` then ``vmgga.NAME``: what NAME is
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "vmgga"
            ):
                units.add(_root_name(node.attr, path))
    return units


def import_graph() -> dict[str, set[str]]:
    """``{unit: units it imports}`` over the whole package (self-imports left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        unit = unit_of(module.removesuffix(".__init__")) if module != "vmgga.__init__" else "__init__"
        graph.setdefault(unit, set()).update(imported_units(path) - {unit})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def upward_imports(graph: dict[str, set[str]], layers: list[set[str]]) -> list[str]:
    """``"a -> b"`` for every import of a unit from a higher layer than its own."""
    level = {unit: index for index, layer in enumerate(layers) for unit in layer}
    return sorted(
        f"{unit} (layer {level[unit]}) -> {target} (layer {level[target]})"
        for unit, targets in graph.items()
        for target in targets
        if level[target] > level[unit]
    )


# --- the checks on the package ------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


@pytest.fixture(scope="module")
def layers() -> list[set[str]]:
    return read_layers(ARCHITECTURE.read_text(encoding="utf-8"))


def test_every_unit_of_the_package_has_one_layer(graph, layers):
    placed = [unit for layer in layers for unit in layer]
    assert len(placed) == len(set(placed)), "a unit is listed in two layers"
    assert set(graph) - set(placed) == set(), "units missing from the layer table of ARCHITECTURE.md"
    assert set(placed) - set(graph) == set(), "the layer table lists units that do not exist"


def test_no_import_points_up_the_layers(graph, layers):
    assert upward_imports(graph, layers) == []


def test_no_cycle_between_units(graph):
    assert find_cycle(graph) is None


# --- the checker itself, on small graphs with known answers -------------------------------------


def test_a_cycle_is_found_and_a_chain_is_not():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_an_upward_import_is_reported():
    layers = [{"io"}, {"field"}, {"api"}]
    assert upward_imports({"io": set(), "field": {"io"}, "api": {"field"}}, layers) == []
    assert upward_imports({"io": set(), "field": {"api"}, "api": set()}, layers) == [
        "field (layer 1) -> api (layer 2)"
    ]


def test_imports_are_read_from_function_bodies_and_root_names(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import vmgga\nfrom vmgga import frames\n"
        "def f():\n    from vmgga.field.warp import warp\n    return vmgga.register\n"
    )
    assert imported_units(source) == {"frames", "field", "api"}


def test_the_layer_block_is_parsed_lowest_first():
    text = "<!-- layers -->\n```\nerrors frames  # base\nio\n```\n<!-- /layers -->"
    assert read_layers(text) == [{"errors", "frames"}, {"io"}]
