"""3D stroke pairs: the learned matches alone (accuracy, calibration) and what they buy end to end.

The stroke benchmark's construction (:mod:`benchmarks.stroke_known_deformation`): the stroke T1 warped
by a random cubic B-spline ``phi`` (``common.BSplineDeformationSpec(seed)``) is the fixed image, T2 or
FLAIR (co-registered with T1) the moving one, so fixed voxel ``x`` truly matches ``phi(x)``. Here
both are resampled to the pipeline's 1.5 mm working grid (T1's orientation) and normalised to [0, 1]
(0.5/99.5 percentiles), and the dense stage runs on them directly (no affine stage: the truth is a
pure deformation), so the matches can be scored voxel by voxel against ``phi``:

* **matches alone** (``get_matcher(...).match``): accuracy at 1/2/4 mm, mean and median error over
  the brain (fixed > 0), ECE of the confidence against "error < 2 mm", for the MIND cost volume, the
  learned matcher and their fusion;
* **end to end** (``estimate_dense_field``): mean / p95 TRE over the brain and seconds per stage for
  each matcher with the ``fast`` preset's instance optimisation at several iteration counts (does a
  better start let it stop earlier?).

    python benchmarks/matcher_3d_stroke.py --threads 1 --seeds 0 1 [--weights W] [--iterations 40,20]

``--diagnose`` instead measures, per pair, what the learned descriptors (``mind+vmgga``) bring to the
Adam loss: each family's feature SSD along ``t * truth`` (t = 0 ... 1.25), its gradient against the
control-grid velocity at the cost volume's start and at its optimised field, the share of each
family kept by one joint PCA basis, and the TRE of blends ``(1 - a) u_adam + a u_learned`` of the
cost volume's optimised field with the smoothed learned matches (an upper bound on what the learned
matches add to it as a global blend).

``--variant NAME=MATCHER,key=value,...`` adds a matcher with dense overrides, e.g.
``--variant vmgga-r1=vmgga,dense.matching.learned_refine_passes=1`` (repeatable; ``--matchers`` then
lists the plain matchers to keep, ``none`` for none).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import peers  # noqa: E402

from vmgga.config import make_config  # noqa: E402
from vmgga.dense.stage import (  # noqa: E402
    estimate_dense_field,
    refine_control_field,
    similarity_grid,
    with_physical_control_grid,
    working_from_control,
)
from vmgga.features.base import get_feature_extractor  # noqa: E402
from vmgga.features.learned import LearnedFeatureExtractor  # noqa: E402
from vmgga.features.mind import MindSscExtractor  # noqa: E402
from vmgga.field import resize  # noqa: E402
from vmgga.field.compress import pca_basis  # noqa: E402
from vmgga.field.fitting import fit_control_field  # noqa: E402
from vmgga.field.instance import field_from_velocity, similarity_loss  # noqa: E402
from vmgga.field.warp import warp  # noqa: E402
from vmgga.matching.registry import get_matcher  # noqa: E402
from vmgga.training import evaluate  # noqa: E402

DATASET = "mr-stroke-t1-t2-flair"
SPACING_MM = 1.5
MATCHERS = ("cost_volume", "vmgga", "fused")


def working_grid(image: sitk.Image, spacing_mm: float = SPACING_MM) -> sitk.Image:
    """``image``'s box and orientation at an isotropic ``spacing_mm``."""
    size = [int(round(n * s / spacing_mm)) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetOrigin(image.GetOrigin())
    grid.SetDirection(image.GetDirection())
    grid.SetSpacing([spacing_mm] * 3)
    return grid


def to_unit_tensor(image: sitk.Image) -> torch.Tensor:
    """``(1, 1, D, H, W)`` float32, 0.5/99.5-percentile scaled to [0, 1]."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    low, high = np.percentile(array, [0.5, 99.5])
    return torch.from_numpy(np.clip((array - low) / max(high - low, 1e-6), 0, 1))[None, None]


def truth_ijk(phi: sitk.Transform, grid: sitk.Image) -> np.ndarray:
    """``phi(x) - x`` on ``grid`` in working voxels, ``(3, D, H, W)`` channels (i, j, k)."""
    disp_lps = common.displacement_lps_mm(phi, grid)  # (D, H, W, 3) LPS mm
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    ijk = np.einsum("ba,dhwb->adhw", direction, disp_lps) / SPACING_MM
    return ijk


def make_pair(folder: Path, seed: int, moving_name: str):
    """Fixed = T1 o phi, moving = T2/FLAIR on the working grid; truth in voxels; brain mask."""
    t1 = sitk.ReadImage(str(folder / "T1.nii.gz"), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(folder / f"{moving_name}.nii.gz"), sitk.sitkFloat32)
    grid = working_grid(t1)
    phi = common.bspline_deformation(t1, common.BSplineDeformationSpec(seed=seed))
    fixed = sitk.Resample(t1, grid, phi, sitk.sitkLinear, 0.0)
    moving = sitk.Resample(moving, grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    mask = sitk.GetArrayFromImage(fixed) > 0
    return to_unit_tensor(fixed), to_unit_tensor(moving), truth_ijk(phi, grid), mask


def error_mm(disp_ijk: torch.Tensor, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """End-point error (mm) over ``mask`` of a ``(1, 3, D, H, W)`` voxel displacement."""
    return np.linalg.norm(disp_ijk[0].double().numpy() - truth, axis=0)[mask] * SPACING_MM


#: Matcher name -> (``dense.matching.matcher``, further dense overrides); filled by ``--variant``.
VARIANTS: dict[str, tuple[str, dict]] = {name: (name, {}) for name in MATCHERS}


def parse_variant(text: str) -> tuple[str, tuple[str, dict]]:
    """``name=matcher,key=value,...`` -> ``(name, (matcher, {key: value}))`` (values: literals or text)."""
    name, _, rest = text.partition("=")
    matcher, *items = rest.split(",")
    return name, (matcher, dict(peers.parse_overrides(items)))


def dense_config(matcher: str, iterations: int, weights: str | None, threads: int):
    """The ``fast`` preset's dense stage with this matcher (a :data:`VARIANTS` name) and
    instance-optimisation length, its control grid converted from mm at :data:`SPACING_MM` as
    :func:`vmgga.register` does (before this, the stage ran the 4-voxel default, 6 mm)."""
    base, extra = VARIANTS[matcher]
    overrides = {"dense.matching.matcher": base, "dense.instance.iterations": iterations, **extra}
    if weights and base != "cost_volume":
        overrides["dense.features.weights"] = weights
    return with_physical_control_grid(make_config("fast", num_threads=threads, **overrides).dense, SPACING_MM)


def matches_alone(fixed, moving, truth, mask, weights, threads, matchers=MATCHERS) -> dict[str, dict]:
    """Per matcher: errors (mm), confidences and seconds of the raw matches."""
    config = dense_config("cost_volume", 0, weights, threads)
    extractor = get_feature_extractor(config)
    fixed_feat, moving_feat = extractor.extract(fixed), extractor.extract(moving)
    out = {}
    for name in matchers:
        start = time.perf_counter()
        match = get_matcher(dense_config(name, 0, weights, threads)).match(
            fixed, moving, fixed_feat, moving_feat
        )
        seconds = time.perf_counter() - start
        out[name] = {"errors": error_mm(match.disp_ijk, truth, mask), "confidence": match.confidence[0, 0].numpy()[mask], "seconds": seconds}  # fmt: skip
    return out


def end_to_end(fixed, moving, truth, mask, matcher, iterations, weights, threads) -> dict:
    """TRE (mm) and stage timings of the dense stage with ``matcher`` and ``iterations``."""
    result = estimate_dense_field(fixed, moving, dense_config(matcher, iterations, weights, threads))
    errors = error_mm(result.disp_ijk, truth, mask)
    return {"tre_mean_mm": float(errors.mean()), "tre_p95_mm": float(np.percentile(errors, 95)), **{f"s_{k}": v for k, v in result.timings_s.items()}}  # fmt: skip


#: Scales ``t`` of the true displacement at which :func:`ssd_along_truth` compares the features.
CURVE_SCALES = (0.0, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25)
#: Blend weights ``a`` of the learned matches in :func:`loss_diagnostics`.
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3)


def ssd_along_truth(fixed_feat, moving_feat, truth: np.ndarray, mask: np.ndarray) -> list[float]:
    """Mean feature SSD over ``mask`` with the moving features sampled at ``x + t * truth(x)``."""
    truth_ijk = torch.from_numpy(truth).float()[None]  # (1, 3, D, H, W)
    fixed_values = fixed_feat[0][:, torch.from_numpy(mask)]  # (C, N)
    out = []
    for t in CURVE_SCALES:
        warped = warp(moving_feat, t * truth_ijk)
        out.append(float((warped[0][:, torch.from_numpy(mask)] - fixed_values).pow(2).sum(0).mean()))
    return out


def velocity_gradient_norm(grid, velocity: torch.Tensor, config, integrate: bool) -> float:
    """Norm of the gradient of the whole-foreground similarity of ``grid`` against ``velocity``."""
    velocity = velocity.detach().clone().requires_grad_(True)
    disp = field_from_velocity(velocity, config)[1] if integrate else velocity
    similarity_loss(disp, grid, slice(0, None)).backward()
    return float(velocity.grad.norm())


def loss_diagnostics(fixed, moving, truth, mask, weights, threads) -> dict:
    """The ``--diagnose`` numbers of one pair (module docstring); learned features at ``fast``'s slice step."""
    config = dense_config("cost_volume", 40, weights, threads)
    mind = [MindSscExtractor().extract(v) for v in (fixed, moving)]
    learned_extractor = LearnedFeatureExtractor(dense_config("vmgga", 40, weights, threads))
    learned = [learned_extractor.extract(v) for v in (fixed, moving)]
    row = {
        f"mind_ssd_t{t}": v for t, v in zip(CURVE_SCALES, ssd_along_truth(*mind, truth, mask), strict=True)
    }
    row |= {
        f"learned_ssd_t{t}": v
        for t, v in zip(CURVE_SCALES, ssd_along_truth(*learned, truth, mask), strict=True)
    }
    match = get_matcher(config).match(fixed, moving, *mind)
    spacing = config.instance.grid_spacing_vox
    padded = resize.padded_shape(tuple(fixed.shape[2:]), spacing)
    disp, confidence = (resize.pad_to(v, padded) for v in (match.disp_ijk, match.confidence))
    start = fit_control_field(disp, confidence, spacing, config.fitting.smoothing_passes)
    final = refine_control_field(fixed, *mind, match, config).detach()
    for family, features in (("mind", mind), ("learned", learned)):
        grid = similarity_grid(fixed, *features, config)
        row[f"{family}_grad_start"] = velocity_gradient_norm(grid, start, config, integrate=True)
        row[f"{family}_grad_final"] = velocity_gradient_norm(grid, final, config, integrate=False)
    for weight in (0.3, 1.0):
        basis = pca_basis(
            torch.cat((mind[0], learned[0] * weight**0.5), 1),
            torch.cat((mind[1], learned[1] * weight**0.5), 1),
            12,
        )
        row[f"joint_pca12_w{weight}_learned_loading"] = (
            float(basis[:, 12:].pow(2).sum()) / learned[0].shape[1]
        )
    adam = working_from_control(final, spacing, tuple(fixed.shape[2:]))
    smoothed = dense_config("vmgga", 0, weights, threads)
    smoothed = dataclasses.replace(
        smoothed, matching=dataclasses.replace(smoothed.matching, learned_smooth_sigma_vox=6.0)
    )
    learned_disp = get_matcher(smoothed).match(fixed, moving, *mind).disp_ijk
    for a in BLEND_WEIGHTS:
        row[f"blend_a{a}_tre_mm"] = float(error_mm((1 - a) * adam + a * learned_disp, truth, mask).mean())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--moving", default="T2,FLAIR")
    parser.add_argument("--weights", default=None, help="VMGGA checkpoint (default: the shipped one)")
    parser.add_argument(
        "--iterations", default="40,20", help="instance-optimisation lengths to compare (none: matches alone)"
    )
    parser.add_argument("--matchers", default=",".join(MATCHERS), help="subset of cost_volume,vmgga,fused")
    parser.add_argument("--variant", action="append", default=[], help="NAME=MATCHER,key=value,...")
    parser.add_argument("--name", default="matcher_3d_stroke")
    parser.add_argument("--diagnose", action="store_true", help="the learned descriptors' share of the loss")
    args = parser.parse_args(argv)
    VARIANTS.update(parse_variant(text) for text in args.variant)
    folder = common.skip_if_missing(DATASET, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"])
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    plain = [] if args.matchers == "none" else args.matchers.split(",")
    matchers = plain + [parse_variant(text)[0] for text in args.variant]
    if args.diagnose:
        return diagnose(folder, args, info)
    pools = {name: {"errors": [], "confidence": [], "seconds": []} for name in matchers}
    e2e_rows, identity = [], []
    iterations = [] if args.iterations == "none" else [int(n) for n in args.iterations.split(",")]
    for seed in args.seeds:
        for moving_name in args.moving.split(","):
            fixed, moving, truth, mask = make_pair(folder, seed, moving_name)
            pair = f"seed{seed}-{moving_name}"
            identity.append(np.linalg.norm(truth, axis=0)[mask] * SPACING_MM)
            alone = matches_alone(fixed, moving, truth, mask, args.weights, args.threads, matchers)
            for name, values in alone.items():
                for key in pools[name]:
                    pools[name][key].append(values[key])
            for matcher in matchers:
                for n in iterations:
                    row = end_to_end(fixed, moving, truth, mask, matcher, n, args.weights, args.threads)
                    e2e_rows.append({"pair": pair, "method": f"{matcher} + {n} it", **row})
                    print(pair, e2e_rows[-1], flush=True)
    match_rows = []
    for name, pool in pools.items():
        epe = torch.from_numpy(np.concatenate(pool["errors"])).float()
        conf = torch.from_numpy(np.concatenate(pool["confidence"])).float()
        result = evaluate.summarise(name, epe, conf, len(pool["seconds"]), 2.0)
        match_rows.append({"matcher": name, "acc_1mm": result.accuracy["1px"], "acc_2mm": result.accuracy["2px"],
                           "acc_4mm": result.accuracy["4px"], "mean_mm": result.epe_mean_px,
                           "median_mm": result.epe_median_px, "ece": result.ece,
                           "seconds": float(np.mean(pool["seconds"]))})  # fmt: skip
        evaluate.plot_reliability(
            result, common.RESULTS_DIR / "figures" / f"{args.name}_{name}_reliability.png"
        )
    identity = np.concatenate(identity)
    methods = list(dict.fromkeys(r["method"] for r in e2e_rows))  # none with --iterations none
    e2e_summary = [{"method": m, **{k: float(np.mean([r[k] for r in e2e_rows if r["method"] == m]))
                                    for k in ("tre_mean_mm", "tre_p95_mm", "s_matching", "s_instance", "s_total")}}
                   for m in methods]  # fmt: skip
    markdown = "\n\n".join([
        f"# {args.name}", f"seeds {args.seeds}, moving {args.moving}; weights: {args.weights or 'shipped'}; "
        f"identity mean error {identity.mean():.3f} mm; load {info['load_average_1_5_15']}",
        "## Matches alone (raw dense matches, brain voxels)",
        common.markdown_table(match_rows, ["matcher", "acc_1mm", "acc_2mm", "acc_4mm", "mean_mm", "median_mm", "ece", "seconds"]),
        "## End to end (dense stage: matches, fit, instance optimisation)",
        common.markdown_table(e2e_summary, ["method", "tre_mean_mm", "tre_p95_mm", "s_matching", "s_instance", "s_total"]),
    ])  # fmt: skip
    print(markdown)
    common.write_results(args.name, {"matches": match_rows, "end_to_end": e2e_summary, "rows": e2e_rows, "machine": info}, markdown)  # fmt: skip
    return 0


def diagnose(folder: Path, args, info: dict) -> int:
    """``--diagnose``: :func:`loss_diagnostics` per pair and their mean, written as results."""
    rows = []
    for seed in args.seeds:
        for moving_name in args.moving.split(","):
            fixed, moving, truth, mask = make_pair(folder, seed, moving_name)
            rows.append(
                {
                    "pair": f"seed{seed}-{moving_name}",
                    **loss_diagnostics(fixed, moving, truth, mask, args.weights, args.threads),
                }
            )
            print(rows[-1], flush=True)
    mean = {"pair": "mean", **{k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "pair"}}
    table = [
        {"quantity": k, **{r["pair"]: f"{r[k]:.4f}" for r in [*rows, mean]}} for k in rows[0] if k != "pair"
    ]
    markdown = "\n\n".join(
        [
            f"# {args.name}",
            f"load {info['load_average_1_5_15']}",
            common.markdown_table(table, ["quantity", *[r["pair"] for r in rows], "mean"]),
        ]
    )
    print(markdown)
    common.write_results(args.name, {"rows": rows, "mean": mean, "machine": info}, markdown)
    return 0  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
