"""Held-out evaluation: match accuracy at 1/2/4 px, end-point error and confidence calibration.

Pairs come from the held-out label maps only (:func:`vmgga.training.data.heldout_sampler`), seeds
``HELDOUT_SEED_OFFSET + i``. Baselines on the same pairs: the zero flow, and the training-free
2D MIND-SSC matcher of :mod:`vmgga.models.matcher2d` (the network's matching head on MIND
descriptors, no learned weights).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from vmgga.models.config import MatcherConfig
from vmgga.models.matcher2d import mind_maps, training_free_match
from vmgga.models.network import MatcherNet
from vmgga.synth.pairs import PairSampler
from vmgga.training import losses
from vmgga.training.data import HELDOUT_SEED_OFFSET

THRESHOLDS_PX = (1.0, 2.0, 4.0)

#: Search radius of the windowed variants (px): above the largest synthetic displacement (~20 px).
SEARCH_RADIUS_PX = 24.0


@dataclass
class EvalResult:
    """Metrics over every valid pixel of the evaluated pairs."""

    method: str  # which matcher
    pairs: int  # number of pairs
    pixels: int  # valid pixels evaluated
    accuracy: dict[str, float]  # "1px", "2px", "4px": share of pixels with end-point error below
    epe_mean_px: float  # mean end-point error
    epe_median_px: float  # median end-point error
    ece: float | None  # expected calibration error of the confidence at ``tolerance_px``
    tolerance_px: float  # tolerance that defines a right match for the calibration
    reliability: dict[str, list[float]] | None  # per bin: count, mean confidence, accuracy


def mind_only_match(image0: Tensor, image1: Tensor, config: MatcherConfig) -> tuple[Tensor, Tensor]:
    """Training-free baseline: the project's 2D MIND-SSC matcher (:mod:`vmgga.models.matcher2d`).

    ``(B, 1, H, W)`` each -> flow ``(B, 2, H, W)`` (x, y) px and confidence ``(B, 1, H, W)``.
    """
    result = training_free_match(image0, image1, lambda image: mind_maps(image, config), config)
    return result.flow_px, result.confidence


def collect(predict, sampler: PairSampler, n_pairs: int, batch_size: int = 8):
    """Run ``predict(image0, image1) -> (flow, confidence)`` on held-out pairs; gather valid pixels."""
    epe, confidence = [], []
    seeds = [HELDOUT_SEED_OFFSET + i for i in range(n_pairs)]
    for start in range(0, n_pairs, batch_size):
        batch = sampler.batch(seeds[start : start + batch_size])
        with torch.no_grad():
            flow, conf = predict(batch["image0"], batch["image1"])
        mask = batch["valid"].bool()
        epe.append(losses.endpoint_error(flow, batch["flow01_px"])[mask])
        confidence.append(conf[mask] if conf is not None else None)
    conf_all = None if confidence[0] is None else torch.cat(confidence)
    return torch.cat(epe), conf_all


def summarise(method: str, epe: Tensor, confidence: Tensor | None, n_pairs: int, tolerance_px: float):
    """:class:`EvalResult` of gathered end-point errors and confidences."""
    accuracy = {f"{t:g}px": float((epe < t).float().mean()) for t in THRESHOLDS_PX}
    ece, reliability = None, None
    if confidence is not None:
        correct = (epe < tolerance_px).float()
        ece = losses.expected_calibration_error(confidence, correct)
        count, mean_conf, acc = losses.reliability_bins(confidence, correct)
        reliability = {"count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": acc.tolist()}
    return EvalResult(
        method,
        n_pairs,
        int(epe.numel()),
        accuracy,
        float(epe.mean()),
        float(epe.median()),
        ece,
        tolerance_px,
        reliability,
    )


def evaluate_model(
    model: MatcherNet,
    sampler: PairSampler,
    n_pairs: int,
    tolerance_px: float = 2.0,
    search_px: float | None = None,
) -> EvalResult:
    """Held-out metrics of a trained matcher; ``search_px`` restricts the coarse search (px)."""
    model.eval()
    device = next(model.parameters()).device

    def predict(image0, image1):
        result = model.match(image0.to(device), image1.to(device), max_displacement_px=search_px)
        return result.flow_px.cpu(), result.confidence.cpu()

    gathered = collect(predict, sampler, n_pairs)
    name = "vmgga (trained)" + ("" if search_px is None else f", search {search_px:g} px")
    return summarise(name, *gathered, n_pairs, tolerance_px)


def evaluate_baselines(config: MatcherConfig, sampler: PairSampler, n_pairs: int, tolerance_px: float = 2.0):
    """Zero flow and training-free MIND-only matching on the same held-out pairs."""

    def zero(image0, image1):
        return torch.zeros(image0.shape[0], 2, *image0.shape[-2:]), None

    def mind(image0, image1):
        return mind_only_match(image0, image1, replace(config, max_displacement_px=SEARCH_RADIUS_PX))

    return [
        summarise("zero flow", *collect(zero, sampler, n_pairs), n_pairs, tolerance_px),
        summarise(
            f"MIND-only (training-free), search {SEARCH_RADIUS_PX:g} px",
            *collect(mind, sampler, n_pairs),
            n_pairs,
            tolerance_px,
        ),
    ]


def evaluate_all(
    model: MatcherNet, sampler: PairSampler, n_pairs: int, tolerance_px: float
) -> list[EvalResult]:
    """Trained (global and windowed search), zero flow and MIND-only on the same held-out pairs."""
    return [
        evaluate_model(model, sampler, n_pairs, tolerance_px),
        evaluate_model(model, sampler, n_pairs, tolerance_px, SEARCH_RADIUS_PX),
        *evaluate_baselines(model.config, sampler, n_pairs, tolerance_px),
    ]


def plot_reliability(result: EvalResult, path: str | Path) -> Path:
    """Reliability diagram: accuracy vs mean confidence per bin, with the pixel share per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rel = result.reliability
    n_bins = len(rel["count"])
    centres = [(i + 0.5) / n_bins for i in range(n_bins)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 6), sharex=True, height_ratios=(3, 1))
    top.bar(centres, rel["accuracy"], width=1 / n_bins, edgecolor="black", alpha=0.7, label="accuracy")
    top.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    top.set_ylabel(f"share within {result.tolerance_px:g} px")
    top.set_title(f"{result.method}: ECE {result.ece:.3f}")
    top.legend(loc="upper left")
    total = max(sum(rel["count"]), 1)
    bottom.bar(centres, [c / total for c in rel["count"]], width=1 / n_bins, edgecolor="black")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("pixel share")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def write_results(results: list[EvalResult], path: str | Path) -> Path:
    """JSON list of the results."""
    Path(path).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return Path(path)


def markdown_table(results: list[EvalResult]) -> str:
    """Markdown table of accuracy, EPE and ECE."""
    lines = [
        "| method | pairs | pixels | acc@1px | acc@2px | acc@4px | mean EPE px | median EPE px | ECE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ece = "n/a" if r.ece is None else f"{r.ece:.3f}"
        acc = " | ".join(f"{r.accuracy[f'{t:g}px']:.3f}" for t in THRESHOLDS_PX)
        lines.append(
            f"| {r.method} | {r.pairs} | {r.pixels} | {acc} | {r.epe_mean_px:.2f} | "
            f"{r.epe_median_px:.2f} | {ece} |"
        )
    return "\n".join(lines)


def plot_examples(model: MatcherNet, sampler: PairSampler, path: str | Path, n_pairs: int = 4) -> Path:
    """Held-out pairs: image 0, image 1, image 1 warped by the predicted flow, confidence, EPE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = sampler.batch([HELDOUT_SEED_OFFSET + i for i in range(n_pairs)])
    with torch.no_grad():
        result = model.eval().match(batch["image0"], batch["image1"])
    warped = _warp(batch["image1"], result.flow_px)
    epe = losses.endpoint_error(result.flow_px, batch["flow01_px"]) * batch["valid"]
    columns = [
        ("image 0", batch["image0"]),
        ("image 1", batch["image1"]),
        ("image 1 warped", warped),
        ("confidence", result.confidence),
        ("EPE px (valid)", epe.clamp(max=8)),
    ]
    fig, axes = plt.subplots(
        n_pairs, len(columns), figsize=(2.2 * len(columns), 2.2 * n_pairs), squeeze=False
    )
    for row in range(n_pairs):
        for col, (title, images) in enumerate(columns):
            axes[row, col].imshow(images[row, 0].numpy(), cmap="gray" if col < 3 else "viridis")
            axes[row, col].set_axis_off()
            if row == 0:
                axes[row, col].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)


def _warp(image1: Tensor, flow_px: Tensor) -> Tensor:
    """Image 1 sampled at ``x + flow(x)`` on image 0's grid (bilinear)."""
    batch, _, height, width = flow_px.shape
    points = (losses.pixel_grid(batch, height, width, flow_px) + flow_px).flatten(2).transpose(1, 2)
    return losses.sample_at_px(image1, points).transpose(1, 2).reshape(batch, 1, height, width)


def main(argv: list[str] | None = None) -> int:
    """``python -m vmgga.training.evaluate --weights W --config C --output DIR``: re-run the held-out report."""
    import argparse

    from vmgga.training.config import load_train_config
    from vmgga.training.data import heldout_sampler

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--weights", required=True, help="matcher checkpoint")
    parser.add_argument("--config", required=True, help="training config (split, crop size, data root)")
    parser.add_argument("--output", required=True, help="folder for heldout_eval.{json,md} and figures")
    parser.add_argument("--pairs", type=int, default=None, help="number of held-out pairs (default: config)")
    parser.add_argument("--cross-modal-only", action="store_true", help="no same-contrast pairs")
    args = parser.parse_args(argv)
    config = load_train_config(args.config)
    if args.cross_modal_only:
        config = replace(config, same_contrast_probability=0.0)
    n_pairs, out = args.pairs or config.eval_pairs, Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model, sampler = MatcherNet.from_checkpoint(args.weights), heldout_sampler(config)
    results = evaluate_all(model, sampler, n_pairs, config.tolerance_px)
    write_results(results, out / "heldout_eval.json")
    (out / "heldout_eval.md").write_text(markdown_table(results) + "\n")
    plot_reliability(results[0], out / "reliability.png")
    plot_examples(model, sampler, out / "heldout_examples.png")
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
