"""What the module installs into Slicer's Python and what it pins."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from VMGGARegistrationLib.dependencies import (
    CORE_SOURCE_ENV,
    SLICER_PROVIDED,
    TORCH_PACKAGES,
    CoreSourceError,
    InstallPlan,
    TorchStatus,
    canonical_name,
    constraint_lines,
    core_install_source,
    core_requirements,
    first_apply_requirements,
    install_plan,
    missing_modules,
    pip_steps,
    requirement_lines,
    requirement_name,
    runtime_requirements,
    torch_specifier,
    torch_status,
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
    with pytest.raises(CoreSourceError, match="set VMGGA_CORE_SOURCE"):  # not published: no index
        core_install_source(module_dir, {})
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    with pytest.raises(CoreSourceError, match="no VMGGA core package found"):
        core_install_source(module_dir, {})
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "vmgga"\nversion = "0.1.0"\n')
    assert core_install_source(module_dir, {}) == str((tmp_path / "repo").resolve())
    for version in ("0.9.0", "0.10.0", "0.2.1"):  # the newest wheel wins (0.10 after 0.9)
        (module_dir / "Resources" / "wheels" / f"vmgga-{version}-py3-none-any.whl").write_bytes(b"")
    wheel = module_dir / "Resources" / "wheels" / "vmgga-0.10.0-py3-none-any.whl"
    assert core_install_source(module_dir, {}) == str(wheel)
    assert core_install_source(module_dir, {CORE_SOURCE_ENV: "/x/vmgga.whl"}) == "/x/vmgga.whl"


def test_requirements_are_read_from_the_core_source(tmp_path):
    """A source folder: its pyproject; a wheel: its METADATA; otherwise the installed metadata."""
    project = tmp_path / "project"
    project.mkdir()
    project.joinpath("pyproject.toml").write_text(
        '[project]\nname = "vmgga"\nversion = "1.0"\ndependencies = ["torch>=2.4", "numpy>=1.24"]\n'
        '[project.optional-dependencies]\nbundle = ["monai>=1.3"]\n'
    )
    assert core_requirements(str(project)) == ["torch>=2.4", "numpy>=1.24"]
    wheel = tmp_path / "vmgga-1.0-py3-none-any.whl"
    metadata = "Metadata-Version: 2.1\nName: vmgga\nVersion: 1.0\nRequires-Dist: torch>=2.5\n"
    metadata += 'Requires-Dist: scipy>=1.10\nRequires-Dist: monai>=1.3; extra == "bundle"\n\nREADME text\n'
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("vmgga/__init__.py", "")
        archive.writestr("vmgga-1.0.dist-info/METADATA", metadata)
    requires = core_requirements(str(wheel))
    assert requires == ["torch>=2.5", "scipy>=1.10", 'monai>=1.3; extra == "bundle"']
    assert runtime_requirements(requires) == ["scipy>=1.10"]
    assert torch_specifier(requires) == ">=2.5"
    assert core_requirements("vmgga==1.0", installed=lambda name: ["numpy"]) == ["numpy"]


def test_torch_status_against_the_cores_requirement():
    specifier = torch_specifier(["numpy", "torch<2.15,>=2.3"])
    assert SpecifierSet(specifier) == SpecifierSet(">=2.3,<2.15")
    assert torch_status(None, specifier) == TorchStatus.MISSING
    assert torch_status("2.1.2+cu118", specifier) == TorchStatus.UNSUPPORTED  # an old torch is not kept
    assert torch_status("2.3.0+cu121", specifier) == TorchStatus.OK  # the CUDA label does not count
    assert torch_status("2.6.0", specifier) == TorchStatus.OK
    assert torch_status("2.15.0", specifier) == TorchStatus.UNSUPPORTED
    assert torch_status("2.5.0.dev20240801", specifier) == TorchStatus.OK
    assert torch_specifier(["numpy"]) == ">=2.3"  # no torch named: the core's documented minimum


def test_first_apply_installs_runtime_requirements_and_the_modules_own_once():
    core = ["torch>=2.3", "numpy>=1.24", "nibabel>=5", 'monai>=1.3; extra == "bundle"', "packaging>=20"]
    assert first_apply_requirements(core, ["packaging>=21", "tqdm"]) == [
        "numpy>=1.24",
        "nibabel>=5",
        "packaging>=20",
        "tqdm",
    ]


def test_pip_steps_install_requirements_constrained_then_the_core_without_dependencies(tmp_path):
    plan = InstallPlan("/w/vmgga-0.1.0-py3-none-any.whl", ">=2.3", ("numpy>=1.24", "tqdm"))
    constraints = tmp_path / "c.txt"
    assert pip_steps(plan, constraints) == [
        ["numpy>=1.24", "tqdm", "-c", str(constraints)],
        ["--no-deps", "/w/vmgga-0.1.0-py3-none-any.whl"],
    ]
    upgrade = pip_steps(plan, constraints, upgrade=True)[-1]
    assert upgrade == ["--no-deps", "--upgrade", "--force-reinstall", plan.core_source]
    assert pip_steps(InstallPlan("/w/core", ">=2.3", ()), constraints) == [["--no-deps", "/w/core"]]


def test_install_plan_of_this_checkout_reads_its_pyproject():
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    plan = install_plan(MODULE_DIR, {})
    assert plan.core_source == str(REPO_DIR)
    expected = [r for r in dependencies if requirement_name(r) != "torch"]
    assert list(plan.requirements[: len(expected)]) == expected
    torch = next(r for r in dependencies if requirement_name(r) == "torch")
    assert SpecifierSet(plan.torch_specifier) == Requirement(torch).specifier


def test_core_source_of_this_checkout_is_the_repository():
    assert core_install_source(MODULE_DIR, {}) == str(REPO_DIR)


def test_missing_modules():
    assert missing_modules(["json", "surely_not_a_module_xyz"], importlib.util.find_spec) == [
        "surely_not_a_module_xyz"
    ]


def test_self_test_skip_reason():
    from VMGGARegistrationLib.dependencies import FULL_SELF_TEST_ENV, self_test_skip_reason

    assert self_test_skip_reason([], {}) is None
    reason = self_test_skip_reason(["torch", "vmgga"], {})
    assert "['torch', 'vmgga']" in reason and f"{FULL_SELF_TEST_ENV}=1" in reason
    assert self_test_skip_reason(["torch"], {FULL_SELF_TEST_ENV: "1"}) is None  # a person asked for it
    assert self_test_skip_reason(["torch"], {FULL_SELF_TEST_ENV: "0"}) is not None
