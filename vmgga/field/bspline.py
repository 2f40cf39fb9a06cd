"""Cubic B-spline representation of the dense field, as ITK's ``BSplineTransform`` reads it.

The dense stage ends with a displacement on its control grid (``dense.instance.grid_spacing_vox`` working voxels),
upsampled trilinearly to the working grid. We write it as a cubic B-spline on that control grid:
every reader (SimpleITK, ANTs, Slicer) evaluates the same cubic B-spline, so they agree exactly, and
the file holds one vector per control point instead of one per working voxel. ``register()`` uses
the least-squares fit to the working-grid field (:func:`spline_fitted_to_field`: on the stroke
pairs 0.012 mm mean, 0.18 mm max from the trilinear field); :func:`spline_from_control`
interpolates the control values instead (0.024 mm mean, 0.28 mm max).

Conventions (ITK's): the spline is ``f(u) = sum_m c_m beta3(u - m)`` per axis, where ``u`` is the
continuous index on the coefficient grid and ``beta3`` the centred cubic B-spline. ITK evaluates it
where all four supporting coefficients exist (``1 <= u < n - 2``) and gives zero displacement elsewhere,
so the coefficient grid is padded by :data:`PAD_NODES` nodes on each side.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from vmgga.frames import Geometry, disp_lps_from_ijk

#: Control nodes added on each side so that the whole control grid (and half a node beyond: the
#: block-centred grid's edge) lies inside ITK's valid region of the spline.
PAD_NODES = 3


def cubic_bspline(t: np.ndarray) -> np.ndarray:
    """The centred cubic B-spline ``beta3(t)`` (support ``|t| < 2``, sums to 1 over integer shifts)."""
    a = np.abs(np.asarray(t, dtype=np.float64))
    near = 2.0 / 3.0 - a**2 + 0.5 * a**3
    far = (2.0 - a) ** 3 / 6.0
    return np.where(a < 1.0, near, np.where(a < 2.0, far, 0.0))


def interpolating_coefficients(values_dhwc: np.ndarray, pad: int = PAD_NODES) -> np.ndarray:
    """B-spline coefficients ``(D + 2p, H + 2p, W + 2p, C)`` whose spline passes through ``values``.

    ``values_dhwc`` ``(D, H, W, C)`` are edge-replicated by ``pad`` nodes per side first (the control
    field is constant beyond its last node, like ``F.interpolate(align_corners=False)``); node ``m`` of
    the input is coefficient node ``m + pad``.
    """
    padded = np.pad(np.asarray(values_dhwc, dtype=np.float64), [(pad, pad)] * 3 + [(0, 0)], mode="edge")
    return np.stack(
        [ndimage.spline_filter(padded[..., c], order=3, mode="mirror") for c in range(padded.shape[-1])],
        axis=-1,
    )


def weight_matrix(positions: np.ndarray, count: int) -> np.ndarray:
    """``(N, count)`` cubic B-spline weights of ``count`` coefficients at continuous indices ``(N,)``."""
    nodes = np.arange(count, dtype=np.float64)
    return cubic_bspline(np.asarray(positions, dtype=np.float64)[:, None] - nodes[None, :])


def evaluate_separable(coefficients_dhwc: np.ndarray, positions_kji: tuple[np.ndarray, ...]) -> np.ndarray:
    """The spline on a tensor-product grid of continuous coefficient indices.

    Args:
        coefficients_dhwc: ``(D, H, W, C)`` coefficients.
        positions_kji: three 1D arrays: the continuous coefficient index along k (D), j (H), i (W) of
            each output plane, row and column.

    Returns:
        ``(len(k), len(j), len(i), C)`` float32 values.
    """
    weights = [weight_matrix(p, n) for p, n in zip(positions_kji, coefficients_dhwc.shape[:3], strict=True)]
    # only the coefficients under the positions' supports (4 per position) enter: crop to them
    spans = [_support_span(w) for w in weights]
    cropped = coefficients_dhwc[tuple(slice(*span) for span in spans)]
    coefficients = torch.from_numpy(np.ascontiguousarray(cropped, dtype=np.float32))
    wk, wj, wi = (
        torch.from_numpy(np.ascontiguousarray(w[:, slice(*span)], dtype=np.float32))
        for w, span in zip(weights, spans, strict=True)
    )
    out = torch.einsum("dhwc,xw->dhxc", coefficients, wi)  # (D, H, I, C)
    out = torch.einsum("dhxc,yh->dyxc", out, wj)  # (D, J, I, C)
    out = torch.einsum("dyxc,zd->zyxc", out, wk)  # (K, J, I, C)
    return out.numpy()


def _support_span(weights: np.ndarray) -> tuple[int, int]:
    """``(first, stop)`` of the columns of ``weights`` ``(N, count)`` that hold a non-zero weight."""
    used = np.flatnonzero(np.any(weights != 0.0, axis=0))
    return (int(used[0]), int(used[-1]) + 1) if used.size else (0, 1)


# --- geometry of the coefficient grid -------------------------------------------------------------


def control_geometry(working: Geometry, factor: int, control_shape_dhw: tuple[int, int, int]) -> Geometry:
    """The block-centred control grid of ``working``: node ``c`` sits at working voxel ``s c + (s - 1) / 2``.

    Same direction as ``working``, spacing ``factor`` times larger (see :mod:`vmgga.field.resize`).
    """
    spacing = np.asarray(working.spacing_mm) * factor
    offset_ijk = np.full(3, (factor - 1) / 2.0)
    origin = np.asarray(working.origin_lps_mm) + working.lps_from_ijk_matrix()[:3, :3] @ offset_ijk
    return Geometry(
        size_ijk=tuple(int(n) for n in control_shape_dhw[::-1]),
        spacing_mm=tuple(float(s) for s in spacing),
        origin_lps_mm=tuple(float(v) for v in origin),
        direction=working.direction,
    )


def padded_geometry(geometry: Geometry, pad: int = PAD_NODES) -> Geometry:
    """``geometry`` grown by ``pad`` nodes on each side (the coefficient grid of a control grid)."""
    linear = geometry.direction_matrix @ np.diag(geometry.spacing_mm)
    origin = np.asarray(geometry.origin_lps_mm) - linear @ np.full(3, float(pad))
    return Geometry(
        size_ijk=tuple(n + 2 * pad for n in geometry.size_ijk),
        spacing_mm=geometry.spacing_mm,
        origin_lps_mm=tuple(float(v) for v in origin),
        direction=geometry.direction,
    )


def positions_on(target: Geometry, grid: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous indices on ``grid`` of the voxel rows of ``target``: ``(k, j, i)`` 1D arrays.

    Both grids must share their direction (the working grid has the fixed image's), so that a
    position on ``grid`` along one axis depends on the ``target`` index along the same axis only.
    """
    if not np.allclose(target.direction_matrix, grid.direction_matrix, atol=1e-6):
        raise ValueError("positions_on needs grids with the same direction")
    start = grid.direction_matrix.T @ (np.asarray(target.origin_lps_mm) - np.asarray(grid.origin_lps_mm))
    start = start / np.asarray(grid.spacing_mm)
    step = np.asarray(target.spacing_mm) / np.asarray(grid.spacing_mm)
    i, j, k = (start[a] + step[a] * np.arange(target.size_ijk[a]) for a in range(3))
    return k, j, i


def displacement_on(
    coefficients_dhwc: np.ndarray, coefficient_grid: Geometry, target: Geometry
) -> np.ndarray:
    """The spline's LPS mm displacement at every voxel of ``target``: ``(D, H, W, 3)`` float32."""
    return evaluate_separable(coefficients_dhwc, positions_on(target, coefficient_grid))


def spline_from_control(
    disp_control_ijk: np.ndarray, working: Geometry, factor: int
) -> tuple[np.ndarray, Geometry]:
    """Control-grid displacement ``(3, d, h, w)`` (control voxels, i j k) -> (coefficients, their grid).

    The coefficients ``(d + 2p, h + 2p, w + 2p, 3)`` are LPS mm; their spline passes through the
    control values exactly.
    """
    control = control_geometry(working, factor, tuple(disp_control_ijk.shape[1:]))
    values_lps_mm = disp_lps_from_ijk(disp_control_ijk, control)  # (d, h, w, 3)
    return interpolating_coefficients(values_lps_mm), padded_geometry(control)


def least_squares_coefficients(
    values_dhwc: np.ndarray, target: Geometry, coefficient_grid: Geometry
) -> np.ndarray:
    """Coefficients on ``coefficient_grid`` whose spline is closest (least squares) to ``values`` on ``target``.

    The basis is a tensor product, so the least-squares solution is separable: the pseudo-inverse
    of each axis's ``(N, n)`` weight matrix applied along that axis. Coefficients that no target
    voxel depends on come out 0 (minimum norm).
    """
    positions = positions_on(target, coefficient_grid)
    count_kji = coefficient_grid.shape_dhw
    pk, pj, pi = (np.linalg.pinv(weight_matrix(p, n)) for p, n in zip(positions, count_kji, strict=True))
    values = np.asarray(values_dhwc, dtype=np.float64)
    return np.einsum("zd,yh,xw,dhwc->zyxc", pk, pj, pi, values, optimize=True)


def spline_fitted_to_field(
    disp_ijk: np.ndarray, working: Geometry, factor: int
) -> tuple[np.ndarray, Geometry]:
    """Working-grid displacement ``(3, D, H, W)`` (working voxels) -> (coefficients, their grid).

    The coefficient grid is the block-centred control grid with ``factor`` working voxels per node,
    padded by :data:`PAD_NODES`; the coefficients ``(d', h', w', 3)`` (LPS mm) are the least-squares
    fit of the field at every working voxel.
    """
    control_shape = tuple(-(-n // factor) for n in disp_ijk.shape[1:])
    grid = padded_geometry(control_geometry(working, factor, control_shape))
    values_lps_mm = disp_lps_from_ijk(disp_ijk, working)  # (D, H, W, 3)
    return least_squares_coefficients(values_lps_mm, working, grid), grid
