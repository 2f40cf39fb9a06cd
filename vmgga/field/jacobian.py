"""Jacobian determinant of ``x -> x + disp(x)`` and its summary (folding, SDlogJ)."""

from __future__ import annotations

import torch

#: Positive determinants are clipped to this range before the log (SDlogJ).
_LOG_CLIP = (1e-3, 1e3)


def _central_gradient(field: torch.Tensor, dim: int) -> torch.Tensor:
    """Central differences (one-sided at the borders) along tensor ``dim``, same shape."""
    n = field.shape[dim]
    if n < 2:
        return torch.zeros_like(field)
    grad = torch.gradient(field, dim=dim)[0]
    return grad


def jacobian_determinant(disp_ijk: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``x -> x + disp(x)`` by finite differences.

    Args:
        disp_ijk: ``(B, 3, D, H, W)`` displacement in voxels (channels i, j, k) on an isotropic grid.

    Returns:
        ``(B, 1, D, H, W)`` determinant (1 = volume preserved, <= 0 = folding).
    """
    # tensor dims 4, 3, 2 are the i, j, k axes
    rows = []
    for channel in range(3):
        component = disp_ijk[:, channel]  # (B, D, H, W)
        rows.append([_central_gradient(component, dim) for dim in (3, 2, 1)])
    jac = [[rows[r][c] + (1.0 if r == c else 0.0) for c in range(3)] for r in range(3)]
    det = (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )
    return det[:, None]


def jacobian_summary(det: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """Folding and smoothness statistics of a determinant volume.

    Args:
        det: ``(B, 1, D, H, W)`` Jacobian determinant.
        mask: optional boolean volume of the same shape; only voxels inside count.

    Returns:
        ``negative_fraction`` (share of voxels with det <= 0), ``sd_log_j`` (standard deviation of
        the log of the positive determinants, clipped to [1e-3, 1e3]), ``min`` and ``max``.
    """
    values = det[mask.bool()] if mask is not None else det.reshape(-1)
    values = values.double()
    positive = values[values > 0].clamp(*_LOG_CLIP)
    sd_log_j = float(positive.log().std()) if positive.numel() > 1 else 0.0
    return {
        "negative_fraction": float((values <= 0).double().mean()) if values.numel() else 0.0,
        "sd_log_j": sd_log_j,
        "min": float(values.min()) if values.numel() else 0.0,
        "max": float(values.max()) if values.numel() else 0.0,
    }
