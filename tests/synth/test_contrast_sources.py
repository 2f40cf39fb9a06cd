"""Contrasts keep their tissue orderings; sources resample and cluster as documented."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from vmgga.synth.contrast import (
    ContrastParams,
    CorruptionParams,
    RandomContrast,
    RandomCorruption,
    Tissue,
    apply_contrast,
    apply_corruption,
    brain_tissue_classes,
)
from vmgga.synth.sources import cluster_labels, load_label_map_source, resample_nearest_dhw

# FreeSurfer labels: 0 background, 24 CSF, 3 cortex (grey), 2 white matter
LABELS = np.array([0, 2, 3, 24])
CLASSES = brain_tissue_classes(LABELS)


def _means(contrast: str, seed: int = 0) -> dict[int, float]:
    rc = RandomContrast(contrasts=(contrast,), label_jitter=0.0)
    params = rc(np.random.default_rng(seed), LABELS, CLASSES)
    return dict(zip(LABELS.tolist(), params.means.tolist(), strict=True))


def test_brain_classes():
    assert CLASSES == {0: Tissue.AIR, 2: Tissue.WHITE, 3: Tissue.GREY, 24: Tissue.CSF}
    assert brain_tissue_classes(np.array([511]))[511] == -1  # extra-cerebral: random class


@pytest.mark.parametrize(
    ("contrast", "order"),
    [("t1", (0, 24, 3, 2)), ("t2", (0, 2, 3, 24)), ("flair", (0, 24, 2, 3)), ("ct", (0, 24, 2, 3))],
)
def test_tissue_orderings_without_jitter(contrast, order):
    means = _means(contrast)
    assert [means[label] for label in order] == sorted(means.values())


def test_ct_means_are_hounsfield_like_and_windowed():
    rc = RandomContrast(contrasts=("ct",))
    params = rc(np.random.default_rng(1), np.array([0, 1]), {0: int(Tissue.AIR), 1: int(Tissue.BONE)})
    assert params.means[0] == -1000.0 and params.means[1] > 500
    assert params.window[0] < -800 and params.window[1] > 1200


def test_apply_contrast_without_corruption_maps_labels_to_their_window_values():
    labels = np.array([[0, 1], [1, 0]])
    params = ContrastParams(
        "ct",
        np.array([0, 1]),
        np.array([-1000.0, 1500.0]),
        np.zeros(2),
        (-1000.0, 1500.0),
        CorruptionParams(),
    )
    image = apply_contrast(np.repeat(np.repeat(labels, 8, 0), 8, 1), params)
    assert image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_array_equal(image[:8, :8], 0.0)
    np.testing.assert_array_equal(image[:8, 8:], 1.0)


def test_corruption_is_deterministic_and_in_range():
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32).astype(np.float32)
    params = RandomCorruption(max_resolution_factor=3.0, invert_probability=0.5)(np.random.default_rng(4))
    out = apply_corruption(image, params)
    np.testing.assert_array_equal(out, apply_corruption(image, params))
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0


def test_invert_flips_intensities():
    image = np.linspace(0, 1, 64).reshape(8, 8)
    plain = apply_corruption(image, CorruptionParams())
    assert np.all(np.diff(plain.ravel()) >= 0) and plain.min() == 0.0 and plain.max() == 1.0
    np.testing.assert_allclose(apply_corruption(image, CorruptionParams(invert=True)), 1 - plain, atol=1e-6)


def test_resample_nearest_keeps_labels_and_picks_the_nearest_voxel():
    labels = np.arange(6 * 6 * 6).reshape(6, 6, 6)
    out = resample_nearest_dhw(labels, (1.0, 1.0, 1.0), 1.5)  # picks voxel indices 0, 2(1.5), 3, 4(4.5)
    assert out.shape == (4, 4, 4)
    np.testing.assert_array_equal(out[:, 0, 0], labels[[0, 2, 3, 4], 0, 0])


def test_cluster_labels_are_intensity_quantiles():
    volume = np.concatenate([np.zeros(10), np.linspace(0.1, 1.0, 40)])
    labels = cluster_labels(volume, 4)
    assert (labels[:10] == 0).all()
    assert [int((labels == k).sum()) for k in (1, 2, 3, 4)] == [10, 10, 10, 10]
    assert np.all(np.diff(labels[10:]) >= 0)


def test_label_map_source_from_file(tmp_path):
    labels = np.zeros((40, 40, 40), dtype=np.int16)
    labels[10:30, 10:30, 10:30] = 2
    labels[16:24, 16:24, 16:24] = 24
    path = tmp_path / "training_seg_01.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    source = load_label_map_source(path, spacing_mm=2.0)
    assert set(np.unique(source.array_dhw).tolist()) == {0, 2, 24}
    # at 2 mm the box covers indices 5..14 of 20; cropped to it plus a 4-voxel margin: 1..18
    assert source.array_dhw.shape == (18, 18, 18)
    assert source.tissue_classes[24] == Tissue.CSF
