"""The packaged extension: the core wheel that CMake builds, and installing the core from it in an
installed layout (the module folder alone, without the repository) with every package index off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from VMGGARegistrationLib.dependencies import (
    first_apply_requirements,
    install_plan,
    pip_steps,
    requirement_lines,
)

REPO_DIR = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_DIR / "VMGGARegistration"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")


def _offline_environment(**extra: str) -> dict[str, str]:
    """This environment without any pip setting, no pip configuration file and no index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", **extra}


def _cmake(*arguments: str, cwd: Path) -> str:
    result = subprocess.run(
        ["cmake", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=_offline_environment(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def core_wheel(tmp_path_factory) -> Path:
    """The wheel exactly as the extension build makes it (BuildCoreWheel.cmake, as CMake calls it)."""
    work = tmp_path_factory.mktemp("core-wheel")
    _cmake(
        f"-DPYTHON={sys.executable}",
        f"-DREPOSITORY={REPO_DIR}",
        f"-DSTAGE={work / 'stage'}",
        f"-DWHEEL_DIR={work / 'wheels'}",
        "-P",
        str(MODULE_DIR / "BuildCoreWheel.cmake"),
        cwd=work,
    )
    wheels = list((work / "wheels").glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_cmake_lists_the_wheel_pip_builds(core_wheel, tmp_path):
    """The name CMake computes (for its build output and install rule) is the file pip wrote."""
    script = tmp_path / "name.cmake"
    script.write_text(
        f'include("{MODULE_DIR / "CoreWheel.cmake"}")\n'
        f'vmgga_core_wheel_name("{REPO_DIR / "pyproject.toml"}" wheel)\n'
        'message("WHEEL=${wheel}")\n'
    )
    output = _cmake("-P", str(script), cwd=tmp_path)
    assert f"WHEEL={core_wheel.name}" in output
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    assert "include(${CMAKE_CURRENT_SOURCE_DIR}/CoreWheel.cmake)" in text
    assert "-P ${CMAKE_CURRENT_SOURCE_DIR}/BuildCoreWheel.cmake" in text
    assert "FILES ${VMGGA_CORE_WHEEL_DIR}/${VMGGA_CORE_WHEEL}" in text
    assert "DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/Resources/wheels" in text


def test_wheel_holds_the_core_and_no_stale_files(core_wheel):
    with zipfile.ZipFile(core_wheel) as archive:
        names = archive.namelist()
    assert "vmgga/__init__.py" in names and "vmgga/cli/main.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    packaged = {n for n in names if n.startswith("vmgga/") and n.endswith(".py")}
    on_disk = {
        str(p.relative_to(REPO_DIR))
        for p in (REPO_DIR / "vmgga").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert packaged == on_disk


def test_installed_extension_installs_the_core_from_its_bundled_wheel(core_wheel, tmp_path):
    """The module folder copied alone (as Slicer installs it), indexes off: the core installs."""
    installed = tmp_path / "Slicer-5.8" / "qt-scripted-modules"
    shutil.copytree(MODULE_DIR, installed, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
    (installed / "Resources" / "wheels").mkdir()
    bundled = Path(shutil.copy(core_wheel, installed / "Resources" / "wheels"))

    plan = install_plan(installed, environ={})
    assert plan.core_source == str(bundled)
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    module_lines = requirement_lines((MODULE_DIR / "Resources" / "requirements.txt").read_text())
    assert list(plan.requirements) == first_apply_requirements(declared, module_lines)

    target = tmp_path / "site-packages"
    core_step = pip_steps(plan, tmp_path / "constraints.txt")[-1]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--target", str(target), *core_step],
        capture_output=True, text=True, timeout=600, env=_offline_environment(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    probe = (
        "import sys, importlib.metadata, importlib.util\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        "print(importlib.util.find_spec('vmgga').origin)\n"
        f"print(importlib.metadata.version('vmgga'))\n"
    )
    # -S: no site-packages, so the editable checkout installed in this environment cannot answer
    shown = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    origin, version = shown.stdout.split()
    assert Path(origin) == target / "vmgga" / "__init__.py"
    assert version == core_wheel.name.split("-")[1]


def test_cmake_builds_and_installs_the_wheel_next_to_the_module(tmp_path):
    """The module's CMakeLists.txt, configured, built and installed with the Slicer macros stubbed:
    the wheel lands in the build tree's and the package's ``qt-scripted-modules/Resources/wheels``."""
    if shutil.which("make") is None:
        pytest.skip("needs make")
    project = tmp_path / "extension"
    project.mkdir()
    modules = "lib/Slicer-5.8/qt-scripted-modules"
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(StubbedSlicerExtension NONE)\n"
        f"set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {modules})\n"
        f"set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {modules})\n"
        f'set(PYTHON_EXECUTABLE "{sys.executable}")\n'
        "macro(slicerMacroBuildScriptedModule)\nendmacro()\n"
        "function(slicer_add_python_unittest)\nendfunction()\n"
        f'add_subdirectory("{MODULE_DIR}" VMGGARegistration)\n'
    )
    build, package = tmp_path / "build", tmp_path / "package"
    _cmake("-S", str(project), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={package}", cwd=tmp_path)
    _cmake("--build", str(build), cwd=tmp_path)
    _cmake("--install", str(build), cwd=tmp_path)
    built = list((build / modules / "Resources" / "wheels").glob("vmgga-*.whl"))
    installed = list((package / modules / "Resources" / "wheels").glob("vmgga-*.whl"))
    assert len(built) == 1 and [w.name for w in installed] == [built[0].name]
    # built from a copy of the sources in the build tree, not in the repository
    assert (build / "VMGGARegistration" / "core-wheel-stage" / "pyproject.toml").is_file()
