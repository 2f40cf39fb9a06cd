"""Ablation of the VMGGA matcher: the full model vs. each switch, on the same 2D cross-modal pairs.

Pairs (all with a known answer, fixed = T1):
* BrainWeb: ``BrainT1SliceBorder20`` vs. the moved PD files (see ``matcher_2d_brainweb.py``).
* Stroke: axial slices (array axis 0) of the co-registered stroke T1, T2 and FLAIR. The fixed slice is
  T1 warped by a known smooth random field ``u`` (``fixed(p) = T1(p + u(p))``, bilinear), the moving
  slice is T2 or FLAIR as shipped, so the true flow is ``u``. ``u``: Gaussian noise on a 6x6 grid
  (std ``--field-std`` px), bicubic upsampling, seeded per slice.

Variants (``--weights``: the full model's checkpoint, default the shipped one):
* ``full``: the checkpoint as trained.
* ``no_gating``: separate checkpoint ``--no-gating-weights`` trained with ``use_gating=False``; if
  absent, the full weights run with plain residuals (``test-time`` ablation, labelled so).
* ``no_visual_guidance``: separate checkpoint ``--no-visual-weights`` trained with
  ``use_visual_guidance=False``; it cannot be derived from the full weights.
* ``sparse``: the full weights with ``matching="sparse"`` (SIFT keypoints + the same descriptors +
  mutual nearest neighbours, densified).
* ``mind_only``: training-free MIND-SSC through the same matching head (no network at all).

    python benchmarks/ablation.py --threads 2 [--weights W] [--untrained]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import matcher_2d_brainweb as brainweb  # noqa: E402

from vmgga.errors import VmggaError  # noqa: E402
from vmgga.matching.sparse import sparse_dense_flow  # noqa: E402
from vmgga.models.checkpoint import resolve_weights, save_checkpoint  # noqa: E402
from vmgga.models.config import MatcherConfig  # noqa: E402
from vmgga.models.matcher2d import Matcher2D  # noqa: E402
from vmgga.models.network import MatcherNet  # noqa: E402

STROKE = "mr-stroke-t1-t2-flair"
#: A variant: ``(image0, image1) (1, 1, H, W) -> (flow_px (1, 2, H, W), confidence (1, 1, H, W))``.
Variant = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Pair:
    """One 2D pair with its true flow ``(2, H, W)`` (x, y) and evaluation mask."""

    def __init__(self, name: str, fixed: np.ndarray, moving: np.ndarray, flow: np.ndarray, mask: np.ndarray):
        self.name, self.fixed, self.moving, self.flow, self.mask = name, fixed, moving, flow, mask


def brainweb_pairs() -> list[Pair]:
    """The moved BrainWeb pairs with their image-checked ground truth."""
    data = brainweb.common.data_root() / brainweb.FOLDER
    if brainweb.common.missing_files(
        brainweb.FOLDER, [brainweb.FIXED, brainweb.REFERENCE_PD, *brainweb.CASES]
    ):
        return []
    fixed, reference = (
        brainweb.read_grey(data / brainweb.FIXED),
        brainweb.read_grey(data / brainweb.REFERENCE_PD),
    )
    pairs = []
    for name, candidates in brainweb.CASES.items():
        if "Border20" in name:
            continue
        moving = brainweb.read_grey(data / name)
        fits = [(brainweb.check_motion(reference, moving, brainweb.content_motion(a, t, moving.shape)), a, t)
                for a, t in candidates]  # fmt: skip
        _, angle, translation = min(fits)
        flow = brainweb.true_flow(brainweb.content_motion(angle, translation, fixed.shape), fixed.shape)
        pairs.append(Pair(f"brainweb-{name[26:-4]}", fixed, moving, flow, _valid(fixed, flow)))
    return pairs


def _valid(fixed: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Foreground pixels whose true match lies inside the image."""
    h, w = fixed.shape
    ys, xs = np.mgrid[0:h, 0:w]
    x1, y1 = xs + flow[0], ys + flow[1]
    return (fixed > 0.05) & (x1 >= 0) & (x1 <= w - 1) & (y1 >= 0) & (y1 <= h - 1)


def smooth_field(shape_hw: tuple[int, int], std_px: float, seed: int) -> np.ndarray:
    """``(2, H, W)`` smooth random displacement (px): seeded 6x6 Gaussian noise, bicubic upsampling."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 2, 6, 6, generator=generator) * std_px
    return F.interpolate(coarse, size=shape_hw, mode="bicubic", align_corners=True)[0].numpy()


def warp_by(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(p) = image(p + flow(p))`` (bilinear, zeros outside); ``flow (2, H, W)`` (x, y) px."""
    h, w = image.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gx = (xs + flow[0]) / (w - 1) * 2 - 1
    gy = (ys + flow[1]) / (h - 1) * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], -1).astype(np.float32))[None]
    out = F.grid_sample(torch.from_numpy(image)[None, None], grid, mode="bilinear", align_corners=True)
    return out[0, 0].numpy()


def stroke_pairs(slices: int, std_px: float) -> list[Pair]:
    """T1 (warped) vs. T2 / FLAIR axial slices through the middle of the brain."""
    if common.missing_files(STROKE, ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"]):
        return []
    volumes = {n: sitk.GetArrayFromImage(sitk.ReadImage(str(common.data_root() / STROKE / f"{n}.nii.gz")))
               for n in ("T1", "T2", "FLAIR")}  # fmt: skip
    volumes = {n: (v / max(float(v.max()), 1.0)).astype(np.float32) for n, v in volumes.items()}
    depth = volumes["T1"].shape[0]
    indices = np.linspace(0.35 * depth, 0.65 * depth, slices).round().astype(int)
    pairs = []
    for index in indices:
        flow = smooth_field(volumes["T1"].shape[1:], std_px, seed=int(index))
        fixed = warp_by(volumes["T1"][index], flow)
        for name in ("T2", "FLAIR"):
            moving = volumes[name][index]
            pairs.append(
                Pair(f"stroke-k{index}-{name}", fixed, moving, flow, _valid(fixed, flow) & (moving > 0))
            )
    return pairs


def network_variant(model: MatcherNet, max_displacement_px: float) -> Variant:
    @torch.no_grad()
    def run(image0, image1):
        if model.config.matching == "sparse":
            return sparse_dense_flow(model, image0, image1, max_displacement_px)
        result = model.match(image0, image1, max_displacement_px=max_displacement_px)
        return result.flow_px, result.confidence

    return run


def build_variants(args) -> tuple[dict[str, Variant], dict[str, str]]:
    """Every variant that can run, and the reason for each that cannot."""
    variants, notes = {}, {}
    variants["identity"] = lambda a, b: (torch.zeros(1, 2, *a.shape[-2:]), torch.ones(1, 1, *a.shape[-2:]))
    mind = Matcher2D("mind", max_displacement_px=args.max_displacement)
    variants["mind_only"] = lambda a, b: (lambda r: (r.flow_px, r.confidence))(mind(a, b))
    try:
        full_path = _untrained_checkpoint(args) if args.untrained else resolve_weights(args.weights)
    except VmggaError as error:
        notes["full"] = notes["no_gating"] = notes["sparse"] = f"not run: {error}"
        full_path = None
    if full_path is not None:
        variants["full"] = network_variant(MatcherNet.from_checkpoint(full_path), args.max_displacement)
        if args.no_gating_weights:
            gating_model = MatcherNet.from_checkpoint(args.no_gating_weights)
        else:
            gating_model = MatcherNet.from_checkpoint(full_path, use_gating=False)
            notes["no_gating"] = "test-time ablation: the full weights with plain residuals (no retraining)"
        variants["no_gating"] = network_variant(gating_model, args.max_displacement)
        sparse_model = MatcherNet.from_checkpoint(full_path, matching="sparse")
        variants["sparse"] = network_variant(sparse_model, args.max_displacement)
    if args.no_visual_weights:
        variants["no_visual_guidance"] = network_variant(MatcherNet.from_checkpoint(args.no_visual_weights),
                                                         args.max_displacement)  # fmt: skip
    else:
        notes["no_visual_guidance"] = "not run: needs a checkpoint trained with use_visual_guidance=False"
    return variants, notes


def _untrained_checkpoint(args) -> Path:
    """A randomly initialised model (seed 0): only to check that this script runs."""
    torch.manual_seed(0)
    return save_checkpoint(MatcherNet(MatcherConfig()), Path(args.tmp) / "untrained.pt", {"untrained": True})


def evaluate(variant: Variant, pair: Pair) -> dict:
    """EPE statistics and time of one variant on one pair."""
    image0, image1 = (
        torch.from_numpy(np.ascontiguousarray(x))[None, None] for x in (pair.fixed, pair.moving)
    )
    start = time.perf_counter()
    flow, confidence = variant(image0, image1)
    seconds = time.perf_counter() - start
    stats = brainweb.epe_stats(flow[0].double().numpy(), pair.flow, pair.mask)
    return {**stats, "time_s": seconds, "mean_confidence": float(confidence[0, 0].numpy()[pair.mask].mean())}


def summarise(rows: list[dict], variants: list[str]) -> list[dict]:
    """Per variant and pair family (brainweb, stroke, all): mean EPE and accuracy within 1 / 3 px."""
    out = []
    for family in ("brainweb", "stroke", "all"):
        for variant in variants:
            mine = [
                r
                for r in rows
                if r["variant"] == variant and (family == "all" or r["pair"].startswith(family))
            ]
            if mine:
                keys = ("epe_mean", "epe_median", "within_1px_pct", "within_3px_pct", "time_s")
                out.append({"pairs": family, "variant": variant, "n": len(mine),
                            **{k: float(np.mean([r[k] for r in mine])) for k in keys}})  # fmt: skip
    return out


def timing_3d(weights: Path, threads: int) -> dict:
    """2.5D matching and feature volumes on the stroke T1 (fixed) / T2 (moving) at 1.5 mm.

    The two volumes are co-registered, so the true displacement is zero: the mean |disp| over the
    brain is the 2.5D matcher's error on this pair.
    """
    from vmgga.config import DenseConfig, FeatureConfig
    from vmgga.features.learned import LearnedFeatureExtractor
    from vmgga.matching.learned import LearnedMatcher

    if common.missing_files(STROKE, ["T1.nii.gz", "T2.nii.gz"]):
        return {"skipped": "stroke data absent"}
    volumes = []
    for name in ("T1", "T2"):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(common.data_root() / STROKE / f"{name}.nii.gz")))
        tensor = torch.from_numpy(array.astype(np.float32) / max(float(array.max()), 1.0))[None, None]
        size = tuple(round(n / 1.5) for n in array.shape)
        volumes.append(F.interpolate(tensor, size=size, mode="trilinear", align_corners=True))
    config = DenseConfig(features=FeatureConfig(backend="vmgga", weights=str(weights)))
    matcher, extractor = LearnedMatcher(config), LearnedFeatureExtractor(config)
    start = time.perf_counter()
    match = matcher.match(volumes[0], volumes[1], volumes[0], volumes[1])
    match_s = time.perf_counter() - start
    start = time.perf_counter()
    extractor.extract(volumes[0])
    features_s = time.perf_counter() - start
    brain = volumes[0][0, 0] > 0.05
    error = match.disp_ijk[0].norm(dim=0)[brain]
    return {"shape_dhw": list(volumes[0].shape[2:]), "threads": threads, "match_s": match_s,
            "features_s": features_s, "mean_abs_disp_vox": float(error.mean()),
            "median_abs_disp_vox": float(error.median()), "mean_confidence": float(match.confidence.mean())}  # fmt: skip


def lut_pair_batch(generator: torch.Generator, batch: int = 4, size: int = 64, labels: int = 6):
    """Synthetic cross-contrast pairs: a smooth random label map, a random intensity per label in each
    image (non-monotone), noise, and a random integer shift of up to 8 px (the true flow)."""
    big = size + 32
    noise = torch.rand(batch, 1, big // 8, big // 8, generator=generator)
    noise = F.interpolate(noise, size=(big, big), mode="bicubic", align_corners=False)
    edges = torch.quantile(noise.flatten(1), torch.linspace(0, 1, labels + 1)[1:-1], dim=1).T
    label_map = (noise.flatten(1)[:, :, None] > edges[:, None, :]).sum(-1)  # (B, big * big)
    images = []
    for _ in range(2):
        lut = torch.rand(batch, labels, generator=generator)
        image = torch.gather(lut, 1, label_map).view_as(noise)
        images.append(image + 0.03 * torch.randn(image.shape, generator=generator))
    sx, sy = (int(v) for v in torch.randint(-8, 9, (2,), generator=generator))
    image0 = images[0][..., 16 : 16 + size, 16 : 16 + size]
    image1 = images[1][..., 16 - sy : 16 - sy + size, 16 - sx : 16 - sx + size]
    return image0, image1, (sx, sy)


def _shift_targets(shift_xy: tuple[int, int], cells: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major image-1 cell of every image-0 cell centre under a pure shift, and validity."""
    ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    col = torch.floor((xs * stride + (stride - 1) / 2 + shift_xy[0]) / stride).long()
    row = torch.floor((ys * stride + (stride - 1) / 2 + shift_xy[1]) / stride).long()
    ok = ((col >= 0) & (col < cells) & (row >= 0) & (row < cells)).flatten()
    return (row.clamp(0, cells - 1) * cells + col.clamp(0, cells - 1)).flatten(), ok


def learnability(steps: int, seed: int = 0) -> list[dict]:
    """Train ``pooled`` vs. ``patch`` MIND encodings for ``steps`` Adam steps on :func:`lut_pair_batch`
    (coarse NLL + 0.1 x capped EPE), then evaluate on 20 held-out batches; MIND-only for reference."""
    rows = []
    for encoding in ("pooled", "patch"):
        torch.manual_seed(seed)
        model = MatcherNet(MatcherConfig(mind_encoding=encoding))
        optimiser = torch.optim.Adam(model.parameters(), 1e-3)
        generator = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        for _ in range(steps):
            image0, image1, shift = lut_pair_batch(generator)
            result = model.match(image0, image1)
            index1, ok = _shift_targets(shift, 8, 8)
            prob = result.coarse_prob[:, torch.arange(64), index1]  # (B, 64)
            nll = (-torch.log(prob.clamp_min(1e-8)) * ok).sum() / (ok.sum() * prob.shape[0])
            epe = (result.flow_px - torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1)).norm(dim=1)
            loss = nll + 0.1 * epe.clamp(max=8).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        rows.append({"variant": f"vmgga mind_encoding={encoding}", "train_steps": steps,
                     "train_s": time.perf_counter() - start, **_lut_eval(model.match)})  # fmt: skip
    mind = Matcher2D("mind", max_displacement_px=24)
    rows.append({"variant": "mind_only (training-free, search 24 px)", "train_steps": 0, **_lut_eval(mind)})
    return rows


@torch.no_grad()
def _lut_eval(match_fn, batches: int = 20) -> dict:
    """EPE over the interior (8 px margin) of held-out :func:`lut_pair_batch` pairs (seed 12345)."""
    generator, errors = torch.Generator().manual_seed(12345), []
    for _ in range(batches):
        image0, image1, shift = lut_pair_batch(generator)
        flow = match_fn(image0, image1).flow_px
        errors.append(
            (flow - torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1)).norm(dim=1)[:, 8:56, 8:56]
        )
    error = torch.cat([e.flatten() for e in errors])
    return {"epe_mean": float(error.mean()), "epe_median": float(error.median()),
            "acc_2px_pct": float((error < 2).float().mean() * 100)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=None, help="full model checkpoint (default: the shipped one)")
    parser.add_argument("--no-gating-weights", default=None, help="checkpoint trained with use_gating=False")
    parser.add_argument(
        "--no-visual-weights", default=None, help="checkpoint trained with use_visual_guidance=False"
    )
    parser.add_argument("--untrained", action="store_true", help="random weights (checks the script only)")
    parser.add_argument("--slices", type=int, default=3, help="stroke slices per contrast")
    parser.add_argument(
        "--field-std", type=float, default=3.0, help="std (px) of the stroke field's grid values"
    )
    parser.add_argument("--max-displacement", type=float, default=48.0, help="coarse search limit (px)")
    parser.add_argument("--tmp", default="/tmp", help="folder for the --untrained checkpoint")
    parser.add_argument("--name", default="ablation", help="results file name")
    parser.add_argument("--timing-3d", action="store_true", help="also time the 2.5D matcher on stroke T1/T2")
    parser.add_argument("--learnability-steps", type=int, default=0,
                        help="also train pooled vs. patch MIND encodings this many steps on synthetic LUT pairs")  # fmt: skip
    args = parser.parse_args(argv)
    pairs = brainweb_pairs() + stroke_pairs(args.slices, args.field_std)
    if not pairs:
        print("skipped: neither brainweb-2d-t1-pd nor mr-stroke-t1-t2-flair is present in the data folder")
        return 0
    common.set_threads(args.threads)
    info = common.machine_info(args.threads)
    variants, notes = build_variants(args)
    rows = [{"pair": p.name, "variant": v, **evaluate(fn, p)} for p in pairs for v, fn in variants.items()]
    summary = summarise(rows, list(variants))
    columns = [
        "pairs",
        "variant",
        "n",
        "epe_mean",
        "epe_median",
        "within_1px_pct",
        "within_3px_pct",
        "time_s",
    ]
    lines = [f"# {args.name}", common.markdown_table(summary, columns), "Notes:"]
    lines += [f"- {variant}: {note}" for variant, note in notes.items()] or ["- none"]
    timing = None
    if args.timing_3d:
        weights = _untrained_checkpoint(args) if args.untrained else resolve_weights(args.weights)
        timing = timing_3d(weights, args.threads)
        lines.append(f"- 3D (2.5D matcher, stroke T1 vs T2 at 1.5 mm, true disp 0): {timing}")
    learn = learnability(args.learnability_steps) if args.learnability_steps > 0 else None
    markdown = "\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:])
    if learn:
        columns = ["variant", "train_steps", "epe_mean", "epe_median", "acc_2px_pct", "train_s"]
        markdown += "\n\nLearnability (synthetic random-LUT pairs, same seed, same steps):\n\n"
        markdown += common.markdown_table(learn, columns)
    print(markdown)
    payload = {"rows": rows, "summary": summary, "notes": notes, "machine": info, "untrained": args.untrained,
               "timing_3d": timing, "learnability": learn}  # fmt: skip
    common.write_results(args.name, payload, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
