"""Is a registration result plausible? Signs of a failed or implausible registration.

A run can finish without an error and still be wrong: two images without shared anatomy, an
affine stage that collapsed or stretched the moving image to fit, a dense stage that found nothing
to match. :func:`assess_report` reads the numbers of a ``report.json`` and returns
``status: "ok" | "suspect"`` with the reasons. The measures that the report holds are computed by
the small pure functions below (normalised mutual information, affine scales, foreground overlap).

The thresholds (:class:`PlausibilityThresholds`) were chosen on the benchmark pairs and on
deliberately wrong pairs; see ``docs/SUSPECT_RESULTS.md`` for the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATUS_OK = "ok"
STATUS_SUSPECT = "suspect"


@dataclass(frozen=True)
class PlausibilityThresholds:
    """Limits beyond which a result is flagged as suspect (see docs/SUSPECT_RESULTS.md)."""

    min_confidence_mean: float = 0.05  # mean matching confidence on the fixed grid
    min_foreground_overlap: float = 0.5  # shared / smaller foreground, fixed and moving, after the affine
    min_affine_scale: float = 0.67  # smallest principal scale of the affine matrix (singular value)
    max_affine_scale: float = 1.5  # largest principal scale
    max_affine_anisotropy: float = 1.5  # largest / smallest principal scale (scale ratio + shear)
    min_nmi_gain: float = -0.005  # NMI(fixed, final) - NMI(fixed, affine only): the dense stage's gain
    aligned_nmi: float = 1.5  # NMI after the affine above which the images already agree: no gain needed


@dataclass(frozen=True)
class Plausibility:
    """The verdict on one registration: ``status`` is ``"ok"`` or ``"suspect"``."""

    status: str
    reasons: tuple[str, ...]

    def as_report_entries(self) -> dict:
        """The two ``report.json`` keys: ``status`` and ``suspect_reasons``."""
        return {"status": self.status, "suspect_reasons": list(self.reasons)}


def normalised_mutual_information(values_a: np.ndarray, values_b: np.ndarray, bins: int = 32) -> float:
    """Studholme's NMI ``(H(A) + H(B)) / H(A, B)`` of paired samples, in [1, 2] (1: independent).

    Args:
        values_a, values_b: ``(N,)`` samples at the same points (e.g. the voxels of a mask).
        bins: histogram bins per image, spread over the 1st to 99th percentile (outliers clipped).
    """
    if values_a.size == 0:
        return 1.0
    joint, _, _ = np.histogram2d(_binned(values_a, bins), _binned(values_b, bins), bins=bins,
                                 range=((0, bins), (0, bins)))  # fmt: skip
    joint = joint / joint.sum()
    joint_entropy = _entropy(joint.ravel())
    if joint_entropy <= 0:
        return 1.0
    return float((_entropy(joint.sum(axis=1)) + _entropy(joint.sum(axis=0))) / joint_entropy)


def _binned(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin indices + 0.5 (float, ``(N,)``) over the 1st-99th percentile range."""
    low, high = np.percentile(values, [1, 99])
    if high <= low:
        return np.full(values.shape, 0.5)
    scaled = (np.clip(values, low, high) - low) / (high - low) * (bins - 1e-6)
    return np.floor(scaled) + 0.5


def _entropy(probabilities: np.ndarray) -> float:
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())


def affine_principal_scales(matrix_3x3: np.ndarray) -> np.ndarray:
    """Singular values of a 3x3 linear map, largest first: the stretch along its principal axes.

    A rotation gives (1, 1, 1); shear shows as a spread of the values even at unit determinant.
    """
    return np.linalg.svd(np.asarray(matrix_3x3, dtype=float).reshape(3, 3), compute_uv=False)


def foreground_dice(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice of two boolean masks of one grid (0 when both are empty)."""
    total = int(mask_a.sum()) + int(mask_b.sum())
    return 0.0 if total == 0 else 2.0 * int(np.logical_and(mask_a, mask_b).sum()) / total


def foreground_overlap(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Shared voxels over the smaller mask (overlap coefficient, 0 when one is empty).

    Unlike Dice it stays near 1 when one image covers only part of the other (a short MR slab
    inside a long CT), and falls when the anatomy does not overlap.
    """
    smaller = min(int(mask_a.sum()), int(mask_b.sum()))
    return 0.0 if smaller == 0 else int(np.logical_and(mask_a, mask_b).sum()) / smaller


def assess_report(
    report: dict, thresholds: PlausibilityThresholds = PlausibilityThresholds()
) -> Plausibility:
    """Flag a registration whose report shows a failure sign; missing numbers are not flagged.

    Reads ``confidence.mean``, ``affine.foreground_overlap``, ``affine.principal_scales`` and
    ``similarity.nmi_gain`` of a report written by :func:`vmgga.register`.
    """
    reasons = [
        *_confidence_reasons(report.get("confidence") or {}, thresholds),
        *_affine_reasons(report.get("affine") or {}, thresholds),
        *_similarity_reasons(report.get("similarity") or {}, thresholds),
    ]
    return Plausibility(STATUS_SUSPECT if reasons else STATUS_OK, tuple(reasons))


def _confidence_reasons(confidence: dict, t: PlausibilityThresholds) -> list[str]:
    mean = confidence.get("mean")
    if mean is not None and mean < t.min_confidence_mean:
        return [f"very low matching confidence (mean {mean:.3f} < {t.min_confidence_mean})"]
    return []


def _affine_reasons(affine: dict, t: PlausibilityThresholds) -> list[str]:
    reasons = []
    overlap = affine.get("foreground_overlap")
    if overlap is not None and overlap < t.min_foreground_overlap:
        reasons.append(
            f"little overlap after the affine stage ({overlap:.0%} of the smaller foreground is shared; "
            f"expected at least {t.min_foreground_overlap:.0%})"
        )
    scales = affine.get("principal_scales")
    if scales:
        low, high = min(scales), max(scales)
        if low < t.min_affine_scale or high > t.max_affine_scale:
            reasons.append(
                f"extreme affine scale (principal scales {low:.2f} to {high:.2f}; "
                f"allowed {t.min_affine_scale} to {t.max_affine_scale})"
            )
        elif low > 0 and high / low > t.max_affine_anisotropy:
            reasons.append(
                f"degenerate affine: strong shear or anisotropic scale (principal scale ratio "
                f"{high / low:.2f} > {t.max_affine_anisotropy})"
            )
    determinant = affine.get("determinant")
    if determinant is not None and determinant <= 0:
        reasons.append("the affine stage mirrored the image (determinant <= 0)")
    return reasons


def _similarity_reasons(similarity: dict, t: PlausibilityThresholds) -> list[str]:
    gain = similarity.get("nmi_gain")
    already_aligned = (similarity.get("nmi_affine") or 1.0) >= t.aligned_nmi  # e.g. an image with itself
    if gain is not None and gain < t.min_nmi_gain and not already_aligned:
        return [f"no similarity gain over the affine stage (NMI change {gain:+.4f} < {t.min_nmi_gain:+})"]
    return []
