"""What the module installs into Slicer's Python and what it pins."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import pytest
from VMGGARegistrationLib.dependencies import (
    CORE_SOURCE_ENV,
    SLICER_PROVIDED,
    TORCH_PACKAGES,
    canonical_name,
    constraint_lines,
    core_install_source,
    missing_modules,
    requirement_lines,
    requirement_name,
    runtime_requirements,
)

REPO_DIR = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_DIR / "VMGGARegistration"


def test_canonical_and_requirement_names():
    assert canonical_name("Simple_ITK") == "simple-itk"
    assert requirement_name("SimpleITK>=2.3  # comment") == "simpleitk"
    assert requirement_name("dask[distributed]>=2024.1") == "dask"
    assert requirement_name("# only a comment") is None
    assert requirement_name("-r other.txt") is None
    assert requirement_name("not a valid requirement ===") is None


def test_runtime_requirements_drop_torch_and_extras():
    requires = [
        "torch<2.15,>=2.3",
        "numpy>=1.24",
        "dask[distributed]>=2024.1",
        'pytest>=7; extra == "dev"',
        'pywin32; sys_platform == "nonexistent-os"',
    ]
    assert runtime_requirements(requires) == ["numpy>=1.24", "dask[distributed]>=2024.1"]


def test_runtime_requirements_of_the_installed_core_match_its_pyproject():
    """The core's metadata (what Slicer would read after installing it) minus torch and extras."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    expected = {canonical_name(requirement_name(r) or "") for r in project["dependencies"]} - {"torch"}
    installed = runtime_requirements(importlib.metadata.requires("vmgga"))
    assert {requirement_name(r) for r in installed} == expected


def test_constraints_pin_only_installed_packages_without_local_versions():
    versions = {"numpy": "1.26.4", "torch": "2.3.1+cu121", "vtk": None}
    lines = constraint_lines(["numpy", "torch", "vtk"], version_of=versions.get)
    assert lines == ["numpy==1.26.4", "torch==2.3.1"]


def test_constraints_cover_what_slicer_ships_and_torch():
    names = {canonical_name(n) for n in SLICER_PROVIDED + TORCH_PACKAGES}
    assert {"simpleitk", "numpy", "vtk", "torch"} <= names
    lines = constraint_lines(["numpy", "SimpleITK"])  # both installed on this machine
    assert [line.split("==")[0] for line in lines] == ["numpy", "SimpleITK"]
    assert lines[0] == f"numpy=={importlib.metadata.version('numpy')}"


def test_requirements_file_is_valid_and_installs_nothing_slicer_ships():
    lines = requirement_lines((MODULE_DIR / "Resources" / "requirements.txt").read_text())
    assert lines, "requirements.txt lists no requirement"
    names = {requirement_name(line) for line in lines}
    assert None not in names
    assert not names & {canonical_name(n) for n in TORCH_PACKAGES + ("vmgga",)}


def test_core_source_order(tmp_path):
    module_dir = tmp_path / "repo" / "VMGGARegistration"
    (module_dir / "Resources" / "wheels").mkdir(parents=True)
    assert core_install_source(module_dir, {}) == "vmgga"  # no repository, no wheel: the index
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert core_install_source(module_dir, {}) == "vmgga"
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "vmgga"\nversion = "0.1.0"\n')
    assert core_install_source(module_dir, {}) == str((tmp_path / "repo").resolve())
    wheel = module_dir / "Resources" / "wheels" / "vmgga-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert core_install_source(module_dir, {}) == str(wheel)
    assert core_install_source(module_dir, {CORE_SOURCE_ENV: "/x/vmgga.whl"}) == "/x/vmgga.whl"


def test_core_source_of_this_checkout_is_the_repository():
    assert core_install_source(MODULE_DIR, {}) == str(REPO_DIR)


def test_missing_modules():
    assert missing_modules(["json", "surely_not_a_module_xyz"], importlib.util.find_spec) == [
        "surely_not_a_module_xyz"
    ]
