"""The Mattes-MI affine stage recovers a known motion across contrasts, deterministically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.affine.mattes import HALF_TURNS, estimate_affine, half_turned
from vmgga.config import AffineConfig, Modality, PreprocessConfig
from vmgga.errors import ConfigError, RegistrationFailedError
from vmgga.preprocess.intensity import normalise_intensity

STROKE = Path(__file__).resolve().parents[1] / "data" / "stroke"


def _normalised(path: Path) -> sitk.Image:
    image = sitk.ReadImage(str(path), sitk.sitkFloat32)
    out = sitk.GetImageFromArray(
        normalise_intensity(sitk.GetArrayFromImage(image), Modality.MR, PreprocessConfig())
    )
    out.CopyInformation(image)
    return out


def _known_motion() -> sitk.Euler3DTransform:
    """A rigid motion (fixed -> moving): 4 degrees about z and a few mm, about the image centre."""
    motion = sitk.Euler3DTransform()
    motion.SetCenter((0.0, 0.0, 0.0))
    motion.SetRotation(0.0, 0.0, np.deg2rad(4.0))
    motion.SetTranslation((6.0, -4.0, 3.0))
    return motion


@pytest.fixture(scope="module")
def pair():
    fixed = _normalised(STROKE / "T1.nii.gz")
    t2 = _normalised(STROKE / "T2.nii.gz")
    motion = _known_motion()
    # moving(y) = T2(motion^-1(y)), so fixed point p corresponds to moving point motion(p)
    moving = sitk.Resample(t2, t2, motion.GetInverse(), sitk.sitkLinear, 0.0)
    return fixed, moving, motion


def _brain_points(fixed: sitk.Image, count: int = 200) -> np.ndarray:
    array = sitk.GetArrayFromImage(fixed)
    kji = np.argwhere(array > 0.2)
    chosen = kji[np.random.default_rng(0).choice(len(kji), count, replace=False)]
    return np.array([fixed.TransformIndexToPhysicalPoint([int(i), int(j), int(k)]) for k, j, i in chosen])


def _mean_error_mm(fixed: sitk.Image, transform: sitk.Transform, motion: sitk.Transform) -> float:
    points = _brain_points(fixed)
    return float(
        np.mean(
            [
                np.linalg.norm(np.subtract(transform.TransformPoint(p), motion.TransformPoint(p)))
                for p in points
            ]
        )
    )


def test_recovers_known_rigid_motion_t1_to_t2(pair):
    """With a nearly unsmoothed last level the affine is precise (the 2 mm test images, across contrasts)."""
    fixed, moving, motion = pair
    result = estimate_affine(fixed, moving, AffineConfig(smoothing_sigmas_mm=(2.0, 1.0)), seed=0)
    identity = _mean_error_mm(fixed, sitk.Transform(3, sitk.sitkIdentity), motion)
    assert identity > 6.0
    assert _mean_error_mm(fixed, result.transform, motion) < 1.5
    assert result.overlap_fraction > 0.9


def test_default_smoothing_recovers_the_motion_coarsely(pair):
    """The default smooths the last level with 3 mm (robust on inter-patient abdomen CT-MR): this
    costs precision (about 2 mm here vs 1.1 mm) that the dense stage recovers afterwards."""
    fixed, moving, motion = pair
    result = estimate_affine(fixed, moving, AffineConfig(), seed=0)
    assert _mean_error_mm(fixed, result.transform, motion) < 2.5


def test_same_seed_same_result(pair):
    fixed, moving, _ = pair
    first = estimate_affine(fixed, moving, AffineConfig(), seed=0)
    second = estimate_affine(fixed, moving, AffineConfig(), seed=0)
    assert first.transform.GetParameters() == second.transform.GetParameters()


def test_images_that_do_not_overlap_are_refused(pair):
    fixed, moving, _ = pair
    far = sitk.TranslationTransform(3, (1000.0, 0.0, 0.0))
    with pytest.raises(RegistrationFailedError, match="do not overlap"):
        estimate_affine(fixed, moving, AffineConfig(enabled=False), initial_transform=far)


def test_initial_transform_must_be_linear(pair):
    fixed, moving, _ = pair
    field = sitk.DisplacementFieldTransform(3)
    with pytest.raises(ConfigError, match="must be linear"):
        estimate_affine(fixed, moving, AffineConfig(), initial_transform=field)


def test_disabled_affine_keeps_the_initial_transform(pair):
    fixed, moving, motion = pair
    result = estimate_affine(fixed, moving, AffineConfig(enabled=False), initial_transform=motion)
    point = (10.0, -5.0, 20.0)
    np.testing.assert_allclose(
        result.transform.TransformPoint(point), motion.TransformPoint(point), atol=1e-9
    )


def test_rigid_option_recovers_the_rigid_motion_with_an_orthonormal_matrix(pair):
    fixed, moving, motion = pair
    config = AffineConfig(transform="rigid", smoothing_sigmas_mm=(2.0, 1.0))
    result = estimate_affine(fixed, moving, config, seed=0)
    matrix = np.reshape(result.transform.GetMatrix(), (3, 3))
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-6)
    assert _mean_error_mm(fixed, result.transform, motion) < 1.5


def test_downsampling_gives_the_same_voxels_with_any_thread_count():
    """The affine stage downsamples with all threads (speed) and optimises with one (reproducibility)."""
    from vmgga.affine.mattes import _downsampled

    rng = np.random.default_rng(5)
    image = sitk.GetImageFromArray(rng.normal(0, 1, (40, 50, 60)).astype(np.float32))
    image.SetSpacing((1.0, 0.9, 1.2))
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        results = []
        for threads in (1, 2):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            results.append(sitk.GetArrayFromImage(_downsampled(image, 3.0)))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    np.testing.assert_array_equal(results[0], results[1])


def test_a_half_turn_is_applied_before_the_start_about_its_centre():
    """``half_turned(A, R)(p) = A(c + R (p - c))``, checked point by point against the start itself."""
    rng = np.random.default_rng(4)
    start = sitk.AffineTransform(3)
    start.SetCenter(tuple(rng.normal(0, 20, 3)))
    start.SetMatrix(tuple((np.eye(3) + rng.normal(0, 0.1, (3, 3))).ravel()))
    start.SetTranslation(tuple(rng.normal(0, 5, 3)))
    centre = np.asarray(start.GetCenter())
    for name, turn in HALF_TURNS.items():
        turned = half_turned(start, turn)
        for p in rng.normal(0, 50, (5, 3)):
            expected = start.TransformPoint(tuple(centre + np.asarray(turn) * (p - centre)))
            np.testing.assert_allclose(turned.TransformPoint(tuple(p)), expected, atol=1e-9, err_msg=name)


def _turned_upside_down(fixed: sitk.Image, motion: sitk.Euler3DTransform) -> sitk.AffineTransform:
    """Fixed -> moving map of a scan turned 180 degrees about the A-P (y) axis through the fixed
    image's centre, then moved by ``motion`` (centre 0): ``p -> Rm (c + D (p - c)) + t``."""
    centre = np.asarray(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    flip = np.diag([-1.0, 1.0, -1.0])
    rotation = np.asarray(motion.GetMatrix()).reshape(3, 3)
    truth = sitk.AffineTransform(3)
    truth.SetMatrix(tuple((rotation @ flip).ravel()))
    truth.SetTranslation(tuple(rotation @ (centre - flip @ centre) + np.asarray(motion.GetTranslation())))
    return truth


def test_the_half_turn_search_finds_a_scan_turned_upside_down(pair):
    """T2 turned about A-P (upside down and left-right) and moved: the centred start cannot reach it,
    the search starts from the right half turn, keeps the run with the best MI and lands within 2 mm."""
    fixed, _, motion = pair
    t2 = _normalised(STROKE / "T2.nii.gz")
    truth = _turned_upside_down(fixed, motion)
    moving = sitk.Resample(t2, t2, truth.GetInverse(), sitk.sitkLinear, 0.0)
    plain = estimate_affine(fixed, moving, AffineConfig(), seed=0)
    assert plain.start_turn == "none" and list(plain.metric_by_start) == ["none"]
    assert _mean_error_mm(fixed, plain.transform, truth) > 20.0
    searched = estimate_affine(fixed, moving, AffineConfig(half_turn_search=True), seed=0)
    assert searched.start_turn == "y"
    assert set(searched.metric_by_start) == set(HALF_TURNS)
    assert searched.metric_value == min(searched.metric_by_start.values())
    assert _mean_error_mm(fixed, searched.transform, truth) < 2.0


def test_the_search_keeps_the_unturned_start_for_an_upright_pair(pair):
    fixed, moving, motion = pair
    searched = estimate_affine(fixed, moving, AffineConfig(half_turn_search=True), seed=0)
    plain = estimate_affine(fixed, moving, AffineConfig(), seed=0)
    assert searched.start_turn == "none"
    assert searched.transform.GetParameters() == plain.transform.GetParameters()


def test_a_turned_start_that_loses_the_overlap_is_dropped_not_fatal(pair, monkeypatch):
    """ITK raises when every sample maps outside the moving image (a turned, elongated box): that start
    is left out of the search; the same failure of the unturned start still raises."""
    from vmgga.affine import mattes

    fixed, moving, _ = pair
    real = mattes._run_mattes

    def failing_when_turned(fixed_small, moving_small, start, *args):
        if np.linalg.det(np.reshape(start.GetMatrix(), (3, 3))) > 0 and start.GetMatrix()[0] < 0:
            raise RuntimeError("All samples map outside moving image buffer")  # turns about y and z
        return real(fixed_small, moving_small, start, *args)

    monkeypatch.setattr(mattes, "_run_mattes", failing_when_turned)
    result = estimate_affine(fixed, moving, AffineConfig(half_turn_search=True), seed=0)
    assert set(result.metric_by_start) == {"none", "x"} and result.start_turn == "none"
    monkeypatch.setattr(mattes, "_run_mattes", lambda *a: (_ for _ in ()).throw(RuntimeError("no overlap")))
    with pytest.raises(RuntimeError, match="no overlap"):
        estimate_affine(fixed, moving, AffineConfig(half_turn_search=True), seed=0)
