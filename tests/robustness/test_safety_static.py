"""Issue 8, safety, checked on the source code itself (AST, not text search): no ``eval``/``exec``
of strings, ``torch.load`` only with ``weights_only=True``, no ``pickle``/unsafe ``yaml.load``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("vmgga", "VMGGARegistration", "monai_bundle", "benchmarks")


def python_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS if (ROOT / d).exists() for p in (ROOT / d).rglob("*.py"))


def calls(tree: ast.AST):
    """Every call node with its dotted callee name (``torch.load``, ``eval``...)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, _dotted(node.func)


def _dotted(func: ast.AST) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # model.to(x).eval() -> <expr>.to.eval
    return ".".join(reversed(parts))


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords
    )


@pytest.fixture(scope="module")
def parsed() -> list[tuple[Path, ast.AST]]:
    files = python_files()
    assert any(p.parts[-2:] == ("io", "images.py") for p in files)  # the scan sees the package
    return [(p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p))) for p in files]


def test_no_eval_or_exec(parsed):
    found = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p, tree in parsed
        for n, name in calls(tree)
        if name in ("eval", "exec")
    ]
    assert found == []


def test_torch_load_only_with_weights_only(parsed):
    unsafe = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p, tree in parsed
        for n, name in calls(tree)
        if name == "torch.load" and not _keyword_is_true(n, "weights_only")
    ]
    assert unsafe == []


def test_no_pickle_or_unsafe_yaml_load(parsed):
    unsafe_names = {"pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "marshal.loads"}
    found = [
        f"{p.relative_to(ROOT)}:{n.lineno} {name}"
        for p, tree in parsed
        for n, name in calls(tree)
        if name in unsafe_names
    ]
    assert found == []


def test_the_scan_finds_what_it_looks_for():
    """The checks above would see a violation (guards against a scan that sees nothing)."""
    tree = ast.parse(
        "x = eval('1')\ny = torch.load('m.pt')\nz = torch.load('m.pt', weights_only=True)\nnet.cpu().eval()\n"
    )
    names = [name for _, name in calls(tree)]
    assert names.count("eval") == 1 and names.count("torch.load") == 2  # a module's .eval() is not eval
    loads = [n for n, name in calls(tree) if name == "torch.load"]
    assert [_keyword_is_true(n, "weights_only") for n in loads] == [False, True]
