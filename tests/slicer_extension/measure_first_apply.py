"""What the Slicer module's first Apply downloads besides torch, in a simulated Slicer Python.

Not a test (pytest does not collect it): a measurement for VMGGARegistration/README.md.

    python tests/slicer_extension/measure_first_apply.py <core project folder> <simulated python>

The requirement list is the installer's own (``first_apply_requirements`` of the core's
``pyproject.toml`` and the module's ``requirements.txt``); the constraints pin what the simulated
Python has installed, as the module pins what Slicer ships. ``pip install --dry-run --report``
resolves it there; the wheels it names are measured (local files by size, others downloaded with
``pip download --no-deps`` into a temporary folder).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

MODULE_DIR = Path(__file__).resolve().parents[2] / "VMGGARegistration"
sys.path.insert(0, str(MODULE_DIR))

from VMGGARegistrationLib import dependencies  # noqa: E402


def pinned_lines(python: Path) -> list[str]:
    """``name==version`` of what ``python`` has installed among the packages the module pins."""
    frozen = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.split()
    pinned = {
        dependencies.canonical_name(n) for n in dependencies.SLICER_PROVIDED + dependencies.TORCH_PACKAGES
    }
    return [line for line in frozen if dependencies.canonical_name(line.split("==")[0]) in pinned]


def wheel_size(url: str, python: Path, folder: Path) -> int:
    """Size in bytes of the wheel at ``url`` (a local file, or downloaded into ``folder``)."""
    path = Path(unquote(urlparse(url).path))
    if url.startswith("file:"):
        return path.stat().st_size
    subprocess.run(
        [str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), url], check=True
    )
    return (folder / path.name).stat().st_size


def main(project_dir: Path, python: Path) -> None:
    requirements = dependencies.first_apply_requirements(
        dependencies.pyproject_requirements(project_dir),
        dependencies.requirement_lines((MODULE_DIR / "Resources" / "requirements.txt").read_text()),
    )
    work = Path(tempfile.mkdtemp(prefix="first-apply-"))
    constraints = pinned_lines(python)
    (work / "constraints.txt").write_text("\n".join(constraints) + "\n")
    report_path = work / "report.json"
    command = [str(python), "-m", "pip", "install", "--dry-run", "-q", "--report", str(report_path)]
    subprocess.run([*command, "-c", str(work / "constraints.txt"), *requirements], check=True)
    print("requirements:", " ".join(requirements))
    print("pre-installed and pinned:", " ".join(constraints))
    total = 0
    installs = json.loads(report_path.read_text())["install"]
    for item in installs:
        size = wheel_size(item["download_info"]["url"], python, work / "wheels")
        total += size
        print(f"  {item['metadata']['name']:<22} {item['metadata']['version']:<12} {size / 1e6:7.1f} MB")
    print(f"total besides torch: {total / 1e6:.1f} MB in {len(installs)} packages")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
