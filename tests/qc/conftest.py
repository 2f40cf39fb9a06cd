"""A registration result built by hand from real images and a known displacement field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.frames import array_from_image, disp_ijk_from_lps, geometry_of, image_from_array
from vmgga.result import RegistrationResult

DATA = Path(__file__).resolve().parents[1] / "data"
STROKE = DATA / "stroke"


def working_grid(fixed: sitk.Image, spacing_mm: float = 4.0) -> sitk.Image:
    """An isotropic grid in the fixed frame covering the fixed image (like the working grid)."""
    extent_mm = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
    size = [int(s) for s in np.ceil(extent_mm / spacing_mm)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetDirection(fixed.GetDirection())
    grid.SetOrigin(fixed.GetOrigin())
    grid.SetSpacing([spacing_mm] * 3)
    return grid


def bump_displacement_lps_mm(grid: sitk.Image, amplitude_mm: float, sigma_mm: float = 25.0) -> sitk.Image:
    """A Gaussian bump of displacement along +L (LPS x) centred in the grid: vector image, LPS mm."""
    geometry = geometry_of(grid)
    d, h, w = geometry.shape_dhw
    k, j, i = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    centre = (np.asarray([w, h, d]) - 1) / 2.0
    offsets_mm = np.stack([i - centre[0], j - centre[1], k - centre[2]], -1) * geometry.spacing_mm
    bump = np.exp(-(offsets_mm**2).sum(-1) / (2 * sigma_mm**2))
    vectors = np.zeros((d, h, w, 3), np.float64)
    vectors[..., 0] = amplitude_mm * bump
    return image_from_array(vectors, geometry, is_vector=True)


def make_result(fixed_path: Path, moving_path: Path, amplitude_mm: float = 6.0) -> RegistrationResult:
    """Fixed/moving read from disk; transform = small translation, then a known bump field."""
    fixed = sitk.Cast(sitk.ReadImage(str(fixed_path)), sitk.sitkFloat32)
    moving = sitk.Cast(sitk.ReadImage(str(moving_path)), sitk.sitkFloat32)
    affine = sitk.TranslationTransform(3, (2.0, -1.0, 0.0))
    displacement = bump_displacement_lps_mm(working_grid(fixed), amplitude_mm)
    field = sitk.DisplacementFieldTransform(sitk.Cast(displacement, sitk.sitkVectorFloat64))
    transform = sitk.CompositeTransform([affine, field])
    jacobian = jacobian_determinant_of(displacement)
    confidence = _confidence_like(fixed)
    return RegistrationResult(
        transform=transform,
        fixed=fixed,
        moving=moving,
        warped=sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0),
        moving_affine=sitk.Resample(moving, fixed, affine, sitk.sitkLinear, 0.0),
        confidence=confidence,
        jacobian_determinant=jacobian,
        displacement_lps_mm=displacement,
        report={
            "jacobian": {"negative_fraction": 0.0, "sd_log_j": 0.01},
            "confidence": {"mean": float(array_from_image(confidence).mean())},
            "timings_s": {"total": 1.5},
            "config": {"preset": "fast", "dense": {"features": {"backend": "mind"}}, "seed": 0},
        },
    )


def jacobian_determinant_of(displacement_lps_mm: sitk.Image) -> sitk.Image:
    """det(I + grad u) by numpy central differences, in voxel units (independent of the direction)."""
    geometry = geometry_of(displacement_lps_mm)
    disp_ijk = disp_ijk_from_lps(array_from_image(displacement_lps_mm), geometry)  # (3, D, H, W)
    # np.gradient over array axes (k, j, i); reorder to derivatives along (i, j, k)
    grads = [np.gradient(component)[::-1] for component in disp_ijk]
    jac = np.array([[grads[r][c] + (r == c) for c in range(3)] for r in range(3)])  # (3, 3, D, H, W)
    det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))
    return image_from_array(det.astype(np.float32), geometry)


def _confidence_like(fixed: sitk.Image) -> sitk.Image:
    """A smooth confidence map in [0, 1]: the normalised fixed intensity, blurred."""
    blurred = array_from_image(sitk.SmoothingRecursiveGaussian(fixed, 4.0))
    values = np.clip(blurred / max(float(blurred.max()), 1e-6), 0.0, 1.0).astype(np.float32)
    return image_from_array(values, geometry_of(fixed))


@pytest.fixture(scope="session")
def stroke_result() -> RegistrationResult:
    """Stroke T2 (moving) onto T1 (fixed), 2 mm test data, with the known bump field."""
    return make_result(STROKE / "T1.nii.gz", STROKE / "T2.nii.gz")
