"""Optional features: the extras of ``pyproject.toml``, and one clear error when an extra is missing.

An extra is made "missing" by putting ``None`` in ``sys.modules`` for its package, which is what
Python's import system reports as not installed (``ModuleNotFoundError``). The command-line cases
run in a fresh interpreter so that nothing imported by other tests hides the absence.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vmgga.extras import (
    EXTRA_PACKAGES,
    MissingExtraError,
    import_optional,
    install_hint,
    is_installed,
    require_extra,
)

REPO = Path(__file__).resolve().parents[1]
STROKE = REPO / "tests" / "data" / "stroke"
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: only the tests that read pyproject.toml skip
    tomllib = None
needs_tomllib = pytest.mark.skipif(
    tomllib is None, reason="reading pyproject.toml needs tomllib (Python 3.11+)"
)
PROJECT = (
    tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    if tomllib
    else {"dependencies": [], "optional-dependencies": {}}
)


def _requirement_name(requirement: str) -> str:
    """``"dask[distributed]>=2024.1"`` -> ``"dask"`` (PEP 503 normalised)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _extra_requirements(extra: str) -> list[str]:
    """The requirements of ``extra``, with ``vmgga[...]`` self-references expanded."""
    requirements = []
    for requirement in PROJECT["optional-dependencies"][extra]:
        nested = re.fullmatch(r"vmgga\[([a-z0-9_,-]+)\]", requirement.strip())
        if nested:
            for name in nested.group(1).split(","):
                requirements += _extra_requirements(name)
        else:
            requirements.append(requirement)
    return requirements


def _names(requirements: list[str]) -> set[str]:
    return {_requirement_name(r) for r in requirements}


CORE = _names(PROJECT["dependencies"])


# --- the declared extras ------------------------------------------------------------------


@needs_tomllib
def test_every_extra_the_code_names_is_declared_with_its_packages():
    declared = PROJECT["optional-dependencies"]
    for extra, packages in EXTRA_PACKAGES.items():
        assert extra in declared, extra
        assert _names(list(packages.values())) <= _names(_extra_requirements(extra)), extra


@needs_tomllib
def test_the_issue_extras_exist_and_all_and_dev_contain_them():
    declared = PROJECT["optional-dependencies"]
    assert {"bundle", "dask", "dinov2", "sparse", "match", "train", "dev", "bench", "all"} <= set(declared)
    everything = _names(_extra_requirements("all"))
    for extra in ("bundle", "dask", "dinov2", "sparse", "match", "train"):
        assert _names(_extra_requirements(extra)) <= everything, extra
    assert everything | _names(_extra_requirements("bench")) <= _names(_extra_requirements("dev"))
    assert {"pytest", "pytest-xdist", "hypothesis", "ruff", "slicer-core", "selenium"} <= _names(
        _extra_requirements("dev")
    )
    assert {"monai", "fire", "pyyaml", "jsonschema", "pytorch-ignite"} <= _names(
        _extra_requirements("bundle")
    )


@needs_tomllib
def test_core_holds_no_extra_package_and_no_itk():
    optional = set().union(*(_names(_extra_requirements(e)) for e in ("all", "bench")))
    assert not CORE & optional, CORE & optional
    assert "itk" not in CORE
    assert {"torch", "numpy", "scipy", "simpleitk", "nibabel", "pydicom", "tqdm"} <= CORE


@needs_tomllib
def test_bundle_metadata_packages_come_with_the_bundle_extra():
    """The bundle's metadata.json lists the packages its commands need besides torch/numpy/monai."""
    metadata = json.loads((REPO / "monai_bundle" / "configs" / "metadata.json").read_text())
    needed = {_requirement_name(name) for name in metadata.get("optional_packages_version", {})}
    assert needed <= CORE | _names(_extra_requirements("bundle")), needed


def _imports(path: Path) -> list[tuple[str, bool]]:
    """``(top-level package, imported at module level)`` of every import statement in ``path``."""
    tree = ast.parse(path.read_text())
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in module_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], id(node) in module_level))
    return found


@needs_tomllib
def test_vmgga_imports_only_core_packages_directly():
    """Every third-party package that ``vmgga/`` imports is a core dependency (so the core runs
    without extras); optional packages go through ``import_optional``. ``distributed.get_worker``
    is the exception: it runs only inside a Dask worker, where distributed is installed."""
    distributions = importlib.metadata.packages_distributions()
    allowed_elsewhere = {("batch/case.py", "distributed")}
    found = set()
    for path in sorted((REPO / "vmgga").rglob("*.py")):
        for package, _ in _imports(path):
            if package in sys.stdlib_module_names or package in ("vmgga", "__future__"):
                continue
            if (path.relative_to(REPO / "vmgga").as_posix(), package) in allowed_elsewhere:
                continue
            dists = {_requirement_name(d) for d in distributions.get(package, [package])}
            assert dists & CORE, f"{path.relative_to(REPO)} imports {package} ({dists}), not a core package"
            found |= dists & CORE
    assert "itk" not in found  # no code imports itk: it left the dependencies


# --- import_optional and require_extra -------------------------------------------------------


def test_import_optional_returns_an_installed_module():
    assert import_optional("json", extra="match", feature="x") is sys.modules["json"]


def test_import_optional_names_the_extra_of_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingExtraError) as caught:
        import_optional("cv2", extra="match", feature="2D matching")
    assert str(caught.value) == (
        '2D matching needs opencv-python-headless, which is not installed: pip install "vmgga[match]"'
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_import_optional_reraises_a_broken_installed_package(tmp_path, monkeypatch):
    """An installed package that fails on a missing dependency of its own is not a missing extra."""
    (tmp_path / "half_installed_pkg.py").write_text("import surely_absent_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as caught:
        import_optional("half_installed_pkg", extra="match", feature="x")
    assert caught.value.name == "surely_absent_dependency_xyz"


def test_require_extra_checks_every_package_of_the_extra(monkeypatch):
    require_extra("dask", feature="--scheduler")  # installed here (dev extra)
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    assert not is_installed("jsonschema")
    with pytest.raises(MissingExtraError, match=re.escape('pip install "vmgga[bundle]"')):
        require_extra("bundle", feature="the bundle")


def test_install_hint_refuses_an_unknown_extra():
    assert install_hint("dinov2") == 'pip install "vmgga[dinov2]"'
    with pytest.raises(ValueError, match="unknown extra"):
        install_hint("nonsense")


# --- each extra's features, with the extra missing -----------------------------------------------


def test_sparse_matching_without_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.delitem(sys.modules, "vmgga.matching.sparse", raising=False)
    with pytest.raises(MissingExtraError, match=re.escape('needs opencv-python-headless, which is not installed: pip install "vmgga[sparse]"')):  # fmt: skip
        importlib.import_module("vmgga.matching.sparse")


def test_dinov2_backend_without_transformers(monkeypatch, tmp_path):
    from vmgga.models.dinov2 import load_dinov2

    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtraError, match=re.escape('pip install "vmgga[dinov2]"')):
        load_dinov2(tmp_path)


def test_dask_executor_without_distributed(monkeypatch):
    from vmgga.batch.executors import run_dask

    monkeypatch.setitem(sys.modules, "distributed", None)
    done = []
    with pytest.raises(MissingExtraError, match=re.escape('pip install "vmgga[dask]"')):
        run_dask([], "tcp://127.0.0.1:1", done.append)
    assert done == []


def _run_cli_without(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``vmgga ARGS`` in a fresh interpreter in which ``module`` is not installed."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None
        from vmgga.cli.main import main
        sys.exit(main({args!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def _assert_one_line_error(completed: subprocess.CompletedProcess, expected: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [expected]
    assert completed.stdout == ""


def test_cli_match_without_opencv(tmp_path):
    args = ["match", str(STROKE / "T1.nii.gz"), str(STROKE / "T2.nii.gz"), "-o", "out"]
    completed = _run_cli_without("cv2", args, tmp_path)
    _assert_one_line_error(
        completed,
        'vmgga match: error: 2D matching needs opencv-python-headless, which is not installed: pip install "vmgga[match]"',
    )
    assert list(tmp_path.iterdir()) == []


def test_cli_register_dinov2_without_transformers(tmp_path):
    (tmp_path / "dinov2").mkdir()
    (tmp_path / "dinov2" / "config.json").write_text("{}")
    args = ["register", str(STROKE / "T1.nii.gz"), str(STROKE / "T2.nii.gz"), "-o", "out"]
    args += ["--features", "dinov2", "--dinov2-path", "dinov2"]
    completed = _run_cli_without("transformers", args, tmp_path)
    _assert_one_line_error(
        completed,
        'vmgga register: error: --features dinov2 needs transformers, which is not installed: pip install "vmgga[dinov2]"',
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dinov2"]


def test_cli_match_dinov2_without_transformers(tmp_path):
    args = ["match", str(STROKE / "T1.nii.gz"), str(STROKE / "T2.nii.gz"), "-o", "out", "--backend", "dinov2"]
    completed = _run_cli_without("transformers", args, tmp_path)
    _assert_one_line_error(
        completed,
        'vmgga match: error: --backend dinov2 needs transformers, which is not installed: pip install "vmgga[dinov2]"',
    )
    assert list(tmp_path.iterdir()) == []


def test_cli_batch_scheduler_without_dask(tmp_path):
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,fixed,moving\na,{STROKE / 'T1.nii.gz'},{STROKE / 'T2.nii.gz'}\n")
    args = ["batch", str(manifest), "-o", "out", "--scheduler", "tcp://127.0.0.1:1"]
    completed = _run_cli_without("distributed", args, tmp_path)
    _assert_one_line_error(
        completed,
        'vmgga batch: error: --scheduler needs dask[distributed], which is not installed: pip install "vmgga[dask]"',
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv"]


def test_cli_train_yaml_config_without_pyyaml(tmp_path):
    (tmp_path / "train.yaml").write_text("seed: 3\n")
    args = ["train", "--config", "train.yaml", "--output", "out"]
    completed = _run_cli_without("yaml", args, tmp_path)
    _assert_one_line_error(
        completed,
        "vmgga train: error: the YAML training config train.yaml needs pyyaml, which is not installed: "
        'pip install "vmgga[train]"',
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.yaml"]
