"""Each peer adapter returns a fixed -> moving map in LPS mm: checked on a known rigid motion.

A rotation about the image centre plus a translation varies across the grid, so the test checks the
vectors' frame and sign as well as where the field is placed on the (oblique, anisotropic) grid.

The adapters that run a real peer are marked ``slow`` (ANTs ~10 s, ConvexAdam ~10 s, elastix
~30-60 s including ``import itk``); they are skipped when the peer's package is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks import common, peers

TRANSLATION_LPS_MM = (3.0, -2.0, 2.5)
ROTATION_RAD = (0.0, 0.0, 0.05)  # about the image centre (LPS z axis)


def _oblique_reference(size=(40, 36, 32), spacing=(1.5, 1.5, 2.0)) -> sitk.Image:
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection(sitk.Euler3DTransform((0, 0, 0), 0.2, -0.1, 0.3).GetMatrix())
    image.SetOrigin((10.0, -5.0, 3.0))
    return image


def _true_motion(reference: sitk.Image) -> sitk.Euler3DTransform:
    centre = reference.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in reference.GetSize()])
    return sitk.Euler3DTransform(centre, *ROTATION_RAD, TRANSLATION_LPS_MM)


@pytest.fixture(scope="module")
def moved_pair(tmp_path_factory):
    """``fixed(x) = moving(R x + t)``: the true fixed -> moving map is that rigid motion (LPS mm)."""
    folder = tmp_path_factory.mktemp("pair")
    noise = np.random.default_rng(0).normal(size=(32, 36, 40)).astype(np.float32)
    moving = sitk.GetImageFromArray(noise)
    moving.CopyInformation(_oblique_reference())
    moving = sitk.RescaleIntensity(sitk.SmoothingRecursiveGaussian(moving, 3.0), 0, 255)
    fixed = common.resample(moving, moving, _true_motion(moving))
    sitk.WriteImage(fixed, str(folder / "fixed.nii.gz"))
    sitk.WriteImage(moving, str(folder / "moving.nii.gz"))
    return folder / "fixed.nii.gz", folder / "moving.nii.gz", fixed


def test_convexadam_voxel_displacement_to_lps():
    """One voxel along array axis 0 = i: the LPS vector is the i axis scaled by its spacing."""
    reference = _oblique_reference(size=(5, 4, 3), spacing=(1.5, 0.7, 2.0))
    disp = np.zeros((5, 4, 3, 3))
    disp[..., 0] = 1.0  # +1 voxel along i
    disp[..., 2] = -2.0  # -2 voxels along k
    lps = peers.convexadam_disp_to_lps_mm(disp, reference)
    start = np.array(reference.TransformContinuousIndexToPhysicalPoint((1.0, 2.0, 1.0)))
    end = np.array(reference.TransformContinuousIndexToPhysicalPoint((2.0, 2.0, -1.0)))
    assert lps.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(lps[1, 2, 1], end - start, atol=1e-9)


def _check_translation(method: str, pair, tmp_path, **options) -> None:
    fixed_path, moving_path, fixed = pair
    result = peers.PEERS[method](fixed_path, moving_path, tmp_path, peers.PeerOptions(threads=1, **options))
    centre = (slice(8, -8),) * 3
    disp = common.displacement_lps_mm(result.transform, fixed)[centre]
    true = common.displacement_lps_mm(_true_motion(fixed), fixed)[centre]
    assert np.ptp(true[..., 0]) > 2.0  # the motion is not a plain translation
    assert np.median(np.linalg.norm(disp - true, axis=-1)) < 0.5
    assert result.transform_path is not None and result.transform_path.exists()
    assert result.seconds > 0


@pytest.mark.slow
def test_convexadam_adapter_recovers_rigid_motion(moved_pair, tmp_path):
    pytest.importorskip("convexAdam")
    _check_translation("convexadam", moved_pair, tmp_path)


@pytest.mark.slow
def test_ants_adapter_recovers_rigid_motion(moved_pair, tmp_path):
    pytest.importorskip("ants")
    _check_translation("ants", moved_pair, tmp_path)


@pytest.mark.slow
def test_the_head_benchmark_runs_ants_through_the_same_helper(moved_pair, tmp_path):
    """ct_mr_head's ANTs (SyN with its own rigid + affine stages) is peers.ants_registration too."""
    pytest.importorskip("ants")
    from benchmarks import ct_mr_head

    fixed_path, moving_path, fixed = moved_pair
    transform, seconds, _ = ct_mr_head.run_ants(fixed_path, moving_path, tmp_path / "head", threads=1)
    centre = (slice(8, -8),) * 3
    disp = common.displacement_lps_mm(transform, fixed)[centre]
    true = common.displacement_lps_mm(_true_motion(fixed), fixed)[centre]
    assert np.median(np.linalg.norm(disp - true, axis=-1)) < 0.5
    assert seconds > 0 and (tmp_path / "head" / "ants_Composite.h5").is_file()


@pytest.mark.slow
def test_elastix_adapter_recovers_rigid_motion(moved_pair, tmp_path):
    itk = pytest.importorskip("itk")
    if not hasattr(itk, "ElastixRegistrationMethod"):
        pytest.skip("itk-elastix is not installed")
    _check_translation("elastix", moved_pair, tmp_path, elastix_iterations=64)


def test_identity_adapter_is_identity(moved_pair, tmp_path):
    fixed_path, moving_path, fixed = moved_pair
    result = peers.run_identity(fixed_path, moving_path, tmp_path, peers.PeerOptions())
    assert np.abs(common.displacement_lps_mm(result.transform, fixed)).max() == 0.0
