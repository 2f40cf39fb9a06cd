"""Jacobian determinant of linear maps, and its summary."""

from __future__ import annotations

import numpy as np
import torch

from vmgga import frames
from vmgga.field.jacobian import jacobian_determinant, jacobian_summary


def _linear_disp(matrix: np.ndarray, shape=(6, 7, 8)) -> torch.Tensor:
    """Displacement of ``x -> A x`` (x in (i, j, k) voxels): ``(A - I) x`` as ``(1, 3, D, H, W)``."""
    points = frames.identity_grid_ijk(shape, dtype=torch.float64)[0]  # (D, H, W, 3)
    disp = points @ torch.from_numpy(matrix - np.eye(3)).T
    return disp.permute(3, 0, 1, 2)[None]


def test_determinant_of_a_linear_map_is_det_a():
    matrix = np.array([[1.1, 0.2, -0.1], [0.05, 0.9, 0.3], [0.15, -0.2, 1.2]])
    det = jacobian_determinant(_linear_disp(matrix))
    assert det.shape == (1, 1, 6, 7, 8)
    np.testing.assert_allclose(det.numpy(), np.linalg.det(matrix), rtol=1e-10)


def test_axis_order_matters_for_a_non_symmetric_map():
    # swapping i and k in the derivative would turn det into -det for this map
    matrix = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.2, 0.0, 0.3]])
    det = jacobian_determinant(_linear_disp(matrix))
    np.testing.assert_allclose(det.numpy(), np.linalg.det(matrix), rtol=1e-10)
    assert jacobian_summary(det)["negative_fraction"] == 1.0


def test_summary_statistics_against_numpy():
    values = torch.tensor([1.0, np.e, np.e**2, -0.5, 0.0, 1.0], dtype=torch.float64).reshape(1, 1, 1, 2, 3)
    summary = jacobian_summary(values)
    assert summary["negative_fraction"] == 2 / 6
    np.testing.assert_allclose(summary["sd_log_j"], np.std([0.0, 1.0, 2.0, 0.0], ddof=1))
    assert summary["min"] == -0.5 and summary["max"] == np.e**2
    mask = values > 0
    assert jacobian_summary(values, mask)["negative_fraction"] == 0.0
