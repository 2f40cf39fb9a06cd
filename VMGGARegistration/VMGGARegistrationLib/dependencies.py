"""Which Python packages the module installs into Slicer, and which it must leave alone.

Plan (run on the first Apply, after the user confirmed), see :func:`install_plan`:

1. find the core: the wheel bundled in ``Resources/wheels/`` (an installed extension), else the
   repository the module sits in (developer mode); read its requirements from that wheel's
   metadata or ``pyproject.toml``, so that only the core's runtime requirements are installed;
2. torch through the PyTorch extension, with the core's version requirement (an older torch is
   offered an upgrade rather than kept);
3. the core's runtime requirements (extras left out) and ``Resources/requirements.txt``, every pip
   call constrained so that the packages Slicer ships (and torch) keep their installed versions;
4. the core itself, without dependencies.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

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

#: Where the extension build puts the core's wheel, relative to the module folder.
WHEELS_DIR = Path("Resources", "wheels")

#: torch requirement used when the core's own requirements name none (pyproject: torch>=2.3).
DEFAULT_TORCH_SPECIFIER = ">=2.3"


class CoreSourceError(RuntimeError):
    """No installable core package was found next to the module."""


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
    2. a wheel bundled in ``Resources/wheels/`` (the packaged extension ships one);
    3. the repository the module sits in (developer mode: ``<repo>/VMGGARegistration/``).

    Raises:
        CoreSourceError: when there is none (the core is not published on an index).
    """
    if environ.get(CORE_SOURCE_ENV):
        return environ[CORE_SOURCE_ENV]
    wheels = sorted(Path(module_dir, WHEELS_DIR).glob(f"{CORE_DISTRIBUTION}-*.whl"), key=_wheel_version)
    if wheels:
        return str(wheels[-1])
    repository = Path(module_dir).resolve().parent
    if _is_core_project(repository / "pyproject.toml"):
        return str(repository)
    raise CoreSourceError(
        f"no VMGGA core package found: neither a wheel in {Path(module_dir, WHEELS_DIR)} nor a source "
        f"checkout around the module; reinstall the extension or set {CORE_SOURCE_ENV} to a vmgga wheel"
    )


def _wheel_version(wheel: Path) -> Version:
    """Version part of ``vmgga-0.10.0-py3-none-any.whl`` (0.10 sorts after 0.9); 0 if unreadable."""
    try:
        return Version(wheel.name.split("-")[1])
    except (IndexError, InvalidVersion):
        return Version("0")


def wheel_requirements(wheel: Path) -> list[str]:
    """``Requires-Dist`` entries of a wheel's ``*.dist-info/METADATA``, read without installing it."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise CoreSourceError(f"{wheel} has {len(names)} METADATA files, expected one")
        metadata = email.parser.Parser().parsestr(archive.read(names[0]).decode("utf-8"))
    return metadata.get_all("Requires-Dist") or []


def pyproject_requirements(project_dir: Path) -> list[str]:
    """``[project].dependencies`` of ``project_dir/pyproject.toml``."""
    if tomllib is None:  # pragma: no cover - Python 3.10
        raise CoreSourceError("reading pyproject.toml needs Python >= 3.11")
    project = tomllib.loads(Path(project_dir, "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project.get("dependencies", []))


def core_requirements(
    source: str, installed: Callable[[str], list[str] | None] = importlib.metadata.requires
) -> list[str]:
    """The core's declared requirements (extras included), read from where it will be installed from.

    A wheel: its metadata; a source folder: its ``pyproject.toml``; anything else (a requirement
    given through ``$VMGGA_CORE_SOURCE``): the installed core's metadata, or none.
    """
    path = Path(source)
    if path.suffix == ".whl" and path.is_file():
        return wheel_requirements(path)
    if (path / "pyproject.toml").is_file():
        return pyproject_requirements(path)
    try:
        return list(installed(CORE_DISTRIBUTION) or [])
    except importlib.metadata.PackageNotFoundError:
        return []


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


# --- torch ---------------------------------------------------------------------------------------


class TorchStatus(str, Enum):
    """Whether the installed torch suits the core."""

    MISSING = "missing"
    OK = "ok"
    UNSUPPORTED = "unsupported"  # installed, but outside the core's requirement (usually too old)


def torch_specifier(requires: Iterable[str]) -> str:
    """Version specifier of the core's (non-extra) torch requirement, e.g. ``'<2.15,>=2.3'``."""
    for text in requires:
        requirement = Requirement(text)
        if canonical_name(requirement.name) != "torch":
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        return str(requirement.specifier) or DEFAULT_TORCH_SPECIFIER
    return DEFAULT_TORCH_SPECIFIER


def torch_status(installed: str | None, specifier: str) -> TorchStatus:
    """MISSING, OK or UNSUPPORTED for an installed torch version (``2.1.0+cu118``) and a specifier."""
    if installed is None:
        return TorchStatus.MISSING
    try:
        version = Version(installed)
    except InvalidVersion:
        return TorchStatus.UNSUPPORTED
    public = Version(version.public)  # local labels (+cu121) do not count against the specifier
    ok = SpecifierSet(specifier).contains(public, prereleases=True)
    return TorchStatus.OK if ok else TorchStatus.UNSUPPORTED


# --- the whole plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallPlan:
    """What the first Apply installs; every list is ready for ``slicer.util.pip_install``."""

    core_source: str  # wheel, folder or requirement of the core (installed with --no-deps)
    torch_specifier: str  # the core's torch requirement, handed to the PyTorch extension
    requirements: tuple[str, ...]  # the core's runtime requirements + the module's own, torch excluded


def first_apply_requirements(core_requires: Iterable[str], module_lines: Iterable[str]) -> list[str]:
    """The core's runtime requirements (no extras, no torch) then the module's own, each name once."""
    kept, seen = [], set()
    for line in [*runtime_requirements(core_requires), *module_lines]:
        name = requirement_name(line)
        if name and name not in seen:
            seen.add(name)
            kept.append(line)
    return kept


def install_plan(module_dir: Path, environ: Mapping[str, str]) -> InstallPlan:
    """Where the core comes from and what it needs, read at run time (nothing hard-coded here)."""
    source = core_install_source(module_dir, environ)
    requires = core_requirements(source)
    module_text = Path(module_dir, "Resources", "requirements.txt").read_text(encoding="utf-8")
    requirements = first_apply_requirements(requires, requirement_lines(module_text))
    return InstallPlan(source, torch_specifier(requires), tuple(requirements))


def pip_steps(plan: InstallPlan, constraints: Path, upgrade: bool = False) -> list[list[str]]:
    """``pip install`` arguments: the requirements (constrained), then the core without dependencies."""
    core = ["--no-deps", *(["--upgrade", "--force-reinstall"] if upgrade else []), plan.core_source]
    if not plan.requirements:
        return [core]
    return [[*plan.requirements, "-c", str(constraints)], core]


# --- the module's self-test ----------------------------------------------------------------------

#: Set to 1 to make the registration self-test install what is missing and run (needs the network).
FULL_SELF_TEST_ENV = "VMGGA_FULL_SELF_TEST"


def self_test_skip_reason(missing: Iterable[str], environ: Mapping[str, str]) -> str | None:
    """Why the registration self-test is skipped (``None``: run it).

    It is skipped when torch or the core is missing (as on the extension build servers, where
    ctest runs it) unless ``$VMGGA_FULL_SELF_TEST=1`` asks for the full test, installs included.
    """
    missing = list(missing)
    if not missing or environ.get(FULL_SELF_TEST_ENV) == "1":
        return None
    return (
        f"the registration self-test needs the Python packages {missing}, which are not installed; "
        f"set {FULL_SELF_TEST_ENV}=1 to install them and run it"
    )
