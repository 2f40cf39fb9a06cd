"""Chained longitudinal registration: express a follow-up's result in the baseline's frame.

Follow-up ``n`` is registered to follow-up ``n-1`` (``pair``: fixed = previous follow-up), whose
own transform maps the baseline to it (``previous``). The composition maps baseline points to
follow-up ``n`` points::

    T_baseline->n(x) = T_pair(T_previous(x))     (sitk.CompositeTransform([T_pair, T_previous]))

since SimpleITK applies a composite's transforms from the last to the first. The other fields of
the result are recomputed in the baseline frame: warped and "before" images (the latter through
``T_previous`` only), confidence (the pair's, carried back through ``T_previous``, times the
predecessor's; the lower of the two: a chain is as sure as its weakest link), and the displacement
of the whole composition with its Jacobian determinant. Where ``T_previous`` carries a voxel
outside the pair's working grid the pairwise field is undefined (ITK uses zero displacement
there, a jump): those voxels get det J = 1 and are left out of the statistics.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk
import torch

from vmgga.field.jacobian import jacobian_determinant, jacobian_summary
from vmgga.frames import array_from_image, disp_ijk_from_lps, geometry_of, image_from_array


def compose_transforms(pair: sitk.Transform, previous: sitk.Transform) -> sitk.CompositeTransform:
    """``x -> pair(previous(x))`` as one flattened composite transform."""
    composite = sitk.CompositeTransform([pair, previous])
    composite.FlattenTransform()
    return composite


def working_grid_like(baseline: sitk.Image, spacing_mm: float) -> sitk.Image:
    """An isotropic grid of ``spacing_mm`` in the baseline's frame, covering the baseline."""
    extent_mm = np.asarray(baseline.GetSize()) * np.asarray(baseline.GetSpacing())
    grid = sitk.Image([max(1, int(n)) for n in np.ceil(extent_mm / spacing_mm)], sitk.sitkFloat32)
    grid.SetDirection(baseline.GetDirection())
    grid.SetOrigin(baseline.GetOrigin())
    grid.SetSpacing([spacing_mm] * 3)
    return grid


def displacement_of(transform: sitk.Transform, grid: sitk.Image) -> sitk.Image:
    """``T(x) - x`` in LPS mm on ``grid``: a 3-component float32 vector image."""
    converter = sitk.TransformToDisplacementFieldFilter()
    converter.SetReferenceImage(grid)
    converter.SetOutputPixelType(sitk.sitkVectorFloat64)
    return sitk.Cast(converter.Execute(transform), sitk.sitkVectorFloat32)


def chained_result(pair, previous_transform: sitk.Transform, previous_confidence: sitk.Image, baseline):
    """The pair's :class:`RegistrationResult` re-expressed from the baseline to follow-up ``n``.

    Args:
        pair: result of registering follow-up ``n`` (moving) to follow-up ``n-1`` (fixed).
        previous_transform: baseline -> follow-up ``n-1`` (the predecessor case's ``transform.h5``).
        previous_confidence: the predecessor's confidence on the baseline grid.
        baseline: the baseline image (float32), the frame of the returned result.
    """
    transform = compose_transforms(pair.transform, previous_transform)
    spacing_mm = float(min(pair.displacement_lps_mm.GetSpacing()))
    grid = working_grid_like(baseline, spacing_mm)
    displacement = displacement_of(transform, grid)
    inside = _inside_pair_domain(pair.displacement_lps_mm, previous_transform, grid)
    jacobian = _masked_jacobian(displacement, inside)
    confidence = _carried_confidence(pair.confidence, previous_transform, previous_confidence, baseline)
    report = _chained_report(pair.report, jacobian, inside, confidence)
    return dataclasses.replace(
        pair,
        transform=transform,
        fixed=baseline,
        warped=sitk.Resample(pair.moving, baseline, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32),
        moving_affine=sitk.Resample(
            pair.moving, baseline, previous_transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
        ),
        confidence=confidence,
        jacobian_determinant=jacobian,
        displacement_lps_mm=displacement,
        report=report,
    )


def _inside_pair_domain(pair_field: sitk.Image, previous_transform: sitk.Transform, grid: sitk.Image):
    """Boolean ``(D, H, W)``: voxels of ``grid`` whose neighbourhood ``T_previous`` maps inside the pair's
    working grid (eroded by one voxel, since the determinant uses neighbouring voxels)."""
    ones = sitk.Image(pair_field.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(pair_field)
    carried = sitk.Resample(ones, grid, previous_transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return array_from_image(sitk.BinaryErode(carried, [1, 1, 1])) > 0


def _masked_jacobian(displacement: sitk.Image, inside: np.ndarray) -> sitk.Image:
    """det J of a displacement field (LPS mm vectors), computed in voxel units so that it does not
    depend on the grid's direction (ITK's DisplacementFieldJacobianDeterminant ignores it); 1 outside
    ``inside``."""
    geometry = geometry_of(displacement)
    disp_ijk = disp_ijk_from_lps(array_from_image(displacement), geometry)  # (3, D, H, W)
    det = jacobian_determinant(torch.from_numpy(disp_ijk[None]).double())[0, 0].numpy()
    return image_from_array(np.where(inside, det, 1.0).astype(np.float32), geometry)


def _carried_confidence(pair_confidence, previous_transform, previous_confidence, baseline) -> sitk.Image:
    """Pair confidence pulled back to the baseline grid; the minimum with the predecessor's."""
    carried = sitk.Resample(
        pair_confidence, baseline, previous_transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    previous = sitk.Resample(
        previous_confidence, baseline, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    return sitk.Minimum(carried, previous)


def _chained_report(
    pair_report: dict, jacobian: sitk.Image, inside: np.ndarray, confidence: sitk.Image
) -> dict:
    """The pair's report with Jacobian (inside the pair's domain) and confidence statistics of the chain."""
    values = array_from_image(confidence)
    report = dict(pair_report)
    report["chain"] = {
        "pairwise": {k: pair_report.get(k) for k in ("jacobian", "confidence", "geometry")},
        "note": "transform = pairwise registration composed with the predecessor's transform; "
        "'before' = moving through the predecessor's transform; jacobian of the whole composition "
        "(affine parts included) where the pairwise field is defined; confidence = min over links",
        "jacobian_voxels": int(inside.sum()),
    }
    det = torch.from_numpy(array_from_image(jacobian))[None, None]
    report["jacobian"] = jacobian_summary(det, torch.from_numpy(inside)[None, None])
    report["confidence"] = {"mean": float(values.mean()), "median": float(np.median(values))}
    return report
