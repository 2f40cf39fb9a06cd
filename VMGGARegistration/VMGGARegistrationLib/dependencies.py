"""Which Python packages the module installs into Slicer, and which it must leave alone.

Plan (run on the first Apply, after the user confirmed): torch through the PyTorch extension;
then the core package ``vmgga`` without its dependencies; then the core's own requirements (read
from its installed metadata) and ``Resources/requirements.txt``, every pip call constrained so that
the packages Slicer ships (and torch) keep their installed versions.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

try:
    import tomllib  # Python >= 3.11 (Slicer >= 5.8 ships 3.12)
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None

#: Distribution name of the core package.
CORE_DISTRIBUTION = "vmgga"

#: Packages that Slicer ships and builds against: never upgraded or replaced by this module.
SLICER_PROVIDED = (
    "SimpleITK",
    "numpy",
    "scipy",
    "vtk",
    "pydicom",
    "requests",
    "packaging",
    "pip",
    "setuptools",
)

#: Installed through the PyTorch extension (PyTorchUtils), which picks the right CUDA build.
TORCH_PACKAGES = ("torch", "torchvision")

#: Environment variable that points the installer at a core source (wheel, folder or requirement).
CORE_SOURCE_ENV = "VMGGA_CORE_SOURCE"


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Simple_ITK`` -> ``simple-itk``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """Canonical name of a requirement line; ``None`` for blanks, comments and options (``-r``...)."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-"):
        return None
    try:
        return canonical_name(Requirement(text).name)
    except InvalidRequirement:
        return None


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements.txt text (comments, blanks and options dropped)."""
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line and requirement_name(line)]


def runtime_requirements(requires: Iterable[str], skip: Iterable[str] = TORCH_PACKAGES) -> list[str]:
    """A distribution's ``Requires-Dist`` entries minus extras-only ones and the ``skip`` names."""
    skipped = {canonical_name(name) for name in skip}
    kept = []
    for text in requires:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canonical_name(requirement.name) not in skipped:
            kept.append(str(requirement))
    return kept


def installed_version(name: str) -> str | None:
    """Installed version of a distribution, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def constraint_lines(
    names: Iterable[str], version_of: Callable[[str], str | None] = installed_version
) -> list[str]:
    """``name==version`` for each installed one of ``names``: pip may then not replace them."""
    lines = []
    for name in names:
        version = version_of(name)
        if version:
            lines.append(f"{name}=={version.split('+')[0]}")  # ==2.3.0 also accepts 2.3.0+cu121
    return lines


def core_install_source(module_dir: Path, environ: Mapping[str, str]) -> str:
    """What ``pip install`` gets for the core, first match wins.

    1. ``$VMGGA_CORE_SOURCE`` (a wheel, a source folder or a requirement);
    2. a wheel bundled in ``Resources/wheels/``;
    3. the repository the module sits in (developer mode: ``<repo>/VMGGARegistration/``);
    4. the distribution name, for an index.
    """
    if environ.get(CORE_SOURCE_ENV):
        return environ[CORE_SOURCE_ENV]
    wheels = sorted(Path(module_dir, "Resources", "wheels").glob(f"{CORE_DISTRIBUTION}-*.whl"))
    if wheels:
        return str(wheels[-1])
    repository = Path(module_dir).resolve().parent
    if _is_core_project(repository / "pyproject.toml"):
        return str(repository)
    return CORE_DISTRIBUTION


def _is_core_project(pyproject: Path) -> bool:
    """True if ``pyproject`` is the core package's project file."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    if tomllib is None:
        return re.search(rf'^name\s*=\s*"{CORE_DISTRIBUTION}"\s*$', text, re.MULTILINE) is not None
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return False
    return canonical_name(str(project.get("name", ""))) == CORE_DISTRIBUTION


def missing_modules(modules: Iterable[str], find_spec: Callable[[str], object]) -> list[str]:
    """Which of ``modules`` cannot be imported (checked with ``find_spec``, without importing them)."""
    return [name for name in modules if find_spec(name) is None]
