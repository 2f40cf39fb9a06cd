"""Shared fixtures: paths of the small test data and helpers to build tiny images and folders."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread per test: pytest-xdist runs a worker per core, and on a shared machine
    spinning OpenMP threads make two threads slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DATA_DIR = Path(__file__).resolve().parent / "data"
CT_DICOM_DIR = DATA_DIR / "abdomen" / "ct_dicom"
STROKE_DIR = DATA_DIR / "stroke"


@pytest.fixture
def data_dir() -> Path:
    """``tests/data``."""
    return DATA_DIR


@pytest.fixture
def ct_dicom_copy(tmp_path: Path) -> Path:
    """A writable copy of the 20-slice CT DICOM series (files ``slice_00.dcm`` ... in position order)."""
    target = tmp_path / "ct_dicom"
    shutil.copytree(CT_DICOM_DIR, target)
    return target


def oblique_direction(angles_rad: tuple[float, float, float] = (0.3, -0.2, 0.5)) -> np.ndarray:
    """A (3, 3) rotation from three Euler angles (an oblique, right-handed frame)."""
    transform = sitk.Euler3DTransform()
    transform.SetRotation(*angles_rad)
    return np.asarray(transform.GetMatrix()).reshape(3, 3)


def make_image(
    size_ijk=(12, 10, 9),
    spacing_mm=(1.5, 0.8, 2.5),
    origin_lps_mm=(-20.0, 13.0, 7.5),
    direction: np.ndarray | None = None,
    seed: int = 0,
    pixel_type=sitk.sitkFloat32,
) -> sitk.Image:
    """A small random image with the given geometry (oblique by default)."""
    rng = np.random.default_rng(seed)
    array = rng.uniform(0, 100, size=tuple(reversed(size_ijk))).astype(np.float32)
    image = sitk.Cast(sitk.GetImageFromArray(array), pixel_type)
    image.SetSpacing(spacing_mm)
    image.SetOrigin(origin_lps_mm)
    image.SetDirection(tuple((oblique_direction() if direction is None else direction).ravel()))
    return image


@pytest.fixture
def small_image() -> sitk.Image:
    """A 12x10x9 random float image on an oblique, anisotropic grid."""
    return make_image()


def folder_snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (to assert nothing changed)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def image_factory():
    """:func:`make_image` (a small random image with a chosen geometry)."""
    return make_image


@pytest.fixture
def snapshot():
    """:func:`folder_snapshot` (path -> sha256 of every file under a folder)."""
    return folder_snapshot
