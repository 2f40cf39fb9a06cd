"""The synthetic HU CT of ``benchmarks/ct_mr_head_hu.py`` on a tiny made-up head, and its skip without data.

The expected HU are typical head-CT values written out here, not read from the module.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from benchmarks import ct_mr_head_hu

# Made-up T1 intensities: WM brightest, GM middle, CSF dark (as in a T1); fat brighter than WM.
T1_CSF, T1_GREY, T1_WHITE, T1_FAT, T1_CORTICAL, T1_MARROW = 60.0, 200.0, 300.0, 400.0, 10.0, 300.0


def tiny_head(n: int = 24) -> tuple[np.ndarray, ...]:
    """A ball head: brain (radius < 7, three tissue slabs along x), skull shell (7..9), scalp (9..11)."""
    z, y, x = np.mgrid[:n, :n, :n] - (n - 1) / 2.0
    r = np.sqrt(x**2 + y**2 + z**2)
    head, skull, brain = r < 11, (r >= 7) & (r < 9), r < 7
    t1 = np.zeros((n, n, n))
    t1[brain] = np.select([x < -2, x < 2], [T1_CSF, T1_GREY], T1_WHITE)[brain]
    t1[skull] = np.where(z > 0, T1_CORTICAL, T1_MARROW)[skull]
    scalp = head & ~skull & ~brain
    t1[scalp] = np.where(y > 0, T1_FAT, T1_GREY)[scalp]  # fat at the back, muscle-like at the front
    return t1, head, brain, skull, x, y, z


def test_synthetic_hu_maps_tissues_to_head_ct_values():
    t1, head, brain, skull, x, y, z = tiny_head()
    hu = ct_mr_head_hu.synthetic_hu(t1, head, brain, skull)
    assert hu.dtype == np.float32 and hu.shape == t1.shape
    np.testing.assert_array_equal(hu[~head], -1000.0)  # air
    assert hu[skull].min() >= 700.0 and hu[skull].max() <= 1500.0
    np.testing.assert_allclose(hu[skull & (z > 0)], 1500.0)  # dark in T1: cortical bone
    np.testing.assert_allclose(hu[skull & (z < 0)], 700.0)  # bright in T1: marrow
    csf, grey, white = (hu[brain & cls] for cls in (x < -2, (x >= -2) & (x < 2), x >= 2))
    np.testing.assert_allclose([csf.mean(), grey.mean(), white.mean()], [8.0, 37.0, 27.0], atol=0.5)
    assert grey.mean() > white.mean() > csf.mean()  # CT order, the reverse of the T1's GM < WM
    scalp = head & ~skull & ~brain
    np.testing.assert_allclose(hu[scalp & (y > 0)], -100.0, atol=0.5)  # fat
    np.testing.assert_allclose(hu[scalp & (y < 0)], 40.0, atol=0.5)  # muscle / scalp


def test_tissue_levels_find_the_three_t1_classes():
    values = np.concatenate([np.full(50, T1_CSF), np.full(200, T1_GREY), np.full(150, T1_WHITE)])
    noisy = values + np.random.default_rng(0).normal(0.0, 5.0, values.size)
    np.testing.assert_allclose(ct_mr_head_hu.tissue_levels(noisy), [T1_CSF, T1_GREY, T1_WHITE], atol=2.0)


def test_scanner_finish_gives_an_int16_clinical_grid_with_5_hu_noise():
    source = sitk.GetImageFromArray(np.full((40, 40, 40), 30.0, dtype=np.float32))
    source.SetSpacing((1.0, 1.0, 1.0))
    source.SetOrigin((-19.5, -19.5, -19.5))
    grid = ct_mr_head_hu.clinical_grid(source)
    assert grid.GetSize() == (256, 256, 108)
    np.testing.assert_allclose(grid.GetSpacing(), (0.96, 0.96, 1.5))
    centre = grid.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in grid.GetSize()])
    np.testing.assert_allclose(centre, (0.0, 0.0, 0.0), atol=1e-9)
    ct = ct_mr_head_hu.scanner_finish(source, grid, seed=1)
    values = sitk.GetArrayViewFromImage(ct)
    assert ct.GetPixelID() == sitk.sitkInt16
    inside = values[50:58, 120:136, 120:136].astype(float)  # well inside the 40 mm cube of 30 HU
    assert abs(inside.mean() - 30.0) < 1.0 and 4.0 < inside.std() < 6.0
    corner = values[:5, :5, :5].astype(float)  # outside the source: air, with noise
    assert abs(corner.mean() + 1000.0) < 2.0
