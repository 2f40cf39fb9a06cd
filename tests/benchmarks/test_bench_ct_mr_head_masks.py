"""ct_mr_head's brain definitions: the aseg grey + white mask, and Dice with volume ratio per mask."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks import ct_mr_head


def _image(array_zyx: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin((-3.0, 2.0, 5.0))
    return image


def test_tissue_mask_keeps_grey_and_white_matter_only():
    """One slab per label: the mask is the slabs of tissue labels, none of CSF or the ventricles."""
    labels = [0, 2, 3, 4, 5, 14, 15, 24, 31, 41, 42, 43, 44, 63, 17]
    array = np.repeat(np.array(labels, dtype=np.int32), 4)[:, None, None] * np.ones((1, 3, 5), np.int32)
    mask = ct_mr_head.tissue_mask(_image(array, spacing=(0.5, 2.0, 1.5)))
    got = sitk.GetArrayFromImage(mask)
    tissue = {2, 3, 41, 42, 17}  # cerebral white and grey matter both sides, hippocampus
    for slab, label in enumerate(labels):
        assert (got[4 * slab : 4 * slab + 4] == (label in tissue)).all(), label
    assert mask.GetSpacing() == (0.5, 2.0, 1.5) and mask.GetOrigin() == (-3.0, 2.0, 5.0)


@pytest.mark.parametrize("shift_mm", [0.0, 2.0, 3.0])
def test_evaluate_gives_dice_and_volume_ratio_of_a_shifted_box(shift_mm):
    """A 6^3 fixed box, an 8x6x6 moving box pulled by a translation: overlap counted by hand."""
    shape = (12, 12, 16)  # z, y, x
    fixed_array, moving_array = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    fixed_array[3:9, 3:9, 4:10] = 1  # x in [4, 10)
    moving_array[3:9, 3:9, 4:12] = 1  # x in [4, 12): 8 voxels wide
    fixed = {"image": _image(fixed_array.astype(np.float32)), "head": _image(fixed_array)}
    moving = {"head": _image(moving_array), "tissue": _image(moving_array)}  # fixed has no tissue: skipped
    # fixed point x maps to moving x + shift: the warped moving box is x in [4 - shift, 12 - shift)
    transform = sitk.TranslationTransform(3, (shift_mm, 0.0, 0.0))
    out = ct_mr_head.evaluate(transform, fixed, moving)
    shift = int(shift_mm)
    overlap_x = min(10, 12 - shift) - max(4, 4 - shift)
    expected_dice = 2 * overlap_x / (6 + 8)
    assert set(out) == {"head_dice", "head_volume_ratio"}
    assert out["head_dice"] == pytest.approx(expected_dice)
    assert out["head_volume_ratio"] == pytest.approx(8 / 6)
