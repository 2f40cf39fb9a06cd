"""One optimisation step of each training stage: the losses of a batch, as a weighted sum.

Batches are dicts from :func:`vmgga.synth.pairs.collate`: ``image0``/``image1`` ``(B, 1, H, W)``,
``flow01_px`` ``(B, 2, H, W)`` (x, y) pixels, ``valid`` ``(B, 1, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vmgga.models.network import MatcherNet
from vmgga.training import losses
from vmgga.training.config import TrainConfig


@dataclass
class StepOutput:
    """The differentiable loss of a step, its logged parts and per-pair matching losses."""

    loss: Tensor  # scalar, weighted sum
    parts: dict[str, float]  # each loss term and metric, for the curves
    pair_losses: list[float]  # per-pair matching NLL (hard example mining); empty in pre-training


def pyramid_contrastive(
    pyramid0: list[Tensor], pyramid1: list[Tensor], batch: dict, config: TrainConfig, strides, generator
) -> Tensor:
    """Mean dense InfoNCE over the pyramid levels.

    The exclusion radius grows with the level's stride: negatives closer than
    ``exclusion_stride_factor`` cells are nearly the same feature (bilinear sampling) and would
    make hardest-negative mining fight the positives.
    """
    terms = [
        losses.dense_contrastive_loss(
            f0,
            f1,
            batch["flow01_px"],
            batch["valid"],
            stride,
            generator,
            n_points=config.contrastive_points,
            temperature=config.temperature,
            exclusion_radius_px=max(config.exclusion_radius_px, config.exclusion_stride_factor * stride),
            hardest_negatives=config.hardest_negatives,
        )
        for f0, f1, stride in zip(pyramid0, pyramid1, strides, strict=True)
    ]
    return torch.stack(terms).mean()


def pretrain_step(
    model: MatcherNet, batch: dict, config: TrainConfig, generator: torch.Generator
) -> StepOutput:
    """Stage 1: dense InfoNCE between the encoder pyramids of the two images."""
    pyramid0, pyramid1 = model.encode(batch["image0"]), model.encode(batch["image1"])
    loss = pyramid_contrastive(pyramid0, pyramid1, batch, config, model.config.pyramid_strides, generator)
    return StepOutput(loss, {"loss": loss.item(), "contrastive": loss.item()}, [])


#: Pixels of image 0 darker than this are not anchors of the pixel head's loss (background).
PIXEL_ANCHOR_LEVEL = 0.02


def pixel_step(model: MatcherNet, batch: dict, config: TrainConfig, generator: torch.Generator) -> StepOutput:
    """Stage 3: the stride-1 pixel head alone (:func:`vmgga.training.losses.local_window_nce`).

    The rest of the network is frozen: its outputs are computed without gradients and in eval mode
    (its batch-norm statistics stay as they are), so its matching does not change.
    """
    model.eval()
    model.pixel_head.train()
    with torch.no_grad():
        inputs0 = model.pixel_head_inputs(batch["image0"])
        inputs1 = model.pixel_head_inputs(batch["image1"])
    desc0, desc1 = model.pixel_head(*inputs0), model.pixel_head(*inputs1)
    anchors = batch["valid"].bool() & (batch["image0"] > PIXEL_ANCHOR_LEVEL)
    loss, top1 = losses.local_window_nce(
        desc0,
        desc1,
        batch["flow01_px"],
        anchors,
        generator,
        n_points=config.pixel_points,
        radius_px=config.pixel_window_px,
        temperature=config.pixel_temperature,
    )
    return StepOutput(loss, {"loss": loss.item(), "pixel_nce": loss.item(), "pixel_top1": top1.item()}, [])


def per_pair_nll(prob: Tensor, index1: Tensor, ok: Tensor) -> list[float]:
    """Matching NLL of each pair of the batch."""
    return [
        losses.coarse_nll(prob[b : b + 1], index1[b : b + 1], ok[b : b + 1]).item() for b in range(len(prob))
    ]


def finetune_step(
    model: MatcherNet, batch: dict, config: TrainConfig, generator: torch.Generator
) -> StepOutput:
    """Stage 2: matching NLL + fine regression + contrastive + cycle + smoothness + confidence BCE."""
    image0, image1, truth, valid = batch["image0"], batch["image1"], batch["flow01_px"], batch["valid"]
    n = image0.shape[0]
    both = config.cycle_weight > 0
    result = model.match(
        torch.cat([image0, image1]) if both else image0, torch.cat([image1, image0]) if both else image1
    )
    flow01 = result.flow_px[:n]
    index1, ok = losses.coarse_targets(truth, valid, result.coarse_stride, tuple(image1.shape[-2:]))
    prob = result.coarse_prob[:n]
    terms = {
        "match": losses.coarse_nll(prob, index1, ok),
        "fine": losses.fine_regression_loss(flow01, truth, valid.float()),
        "contrastive": pyramid_contrastive(
            [f[:n] for f in result.features0],
            [f[:n] for f in result.features1],
            batch,
            config,
            model.config.pyramid_strides,
            generator,
        ),
        "smoothness": losses.smoothness_loss(result.flow_px),
    }
    terms["cycle"] = losses.cycle_loss(flow01, result.flow_px[n:]) if both else torch.zeros(())
    correct = losses.correct_matches(flow01.detach(), truth, config.tolerance_px)
    terms["confidence"] = losses.confidence_bce(result.confidence[:n], correct, valid.float())
    loss = _weighted_sum(terms, config)
    parts = {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
    parts.update(_batch_metrics(flow01.detach(), result.confidence[:n].detach(), truth, valid, config))
    return StepOutput(loss, parts, per_pair_nll(prob.detach(), index1, ok))


def _weighted_sum(terms: dict[str, Tensor], config: TrainConfig) -> Tensor:
    weights = {
        "match": config.match_weight,
        "fine": config.fine_weight,
        "contrastive": config.contrastive_weight,
        "smoothness": config.smoothness_weight,
        "cycle": config.cycle_weight,
        "confidence": config.confidence_weight,
    }
    return sum(weights[k] * v for k, v in terms.items())


def _batch_metrics(
    flow: Tensor, confidence: Tensor, truth: Tensor, valid: Tensor, config: TrainConfig
) -> dict:
    """Mean end-point error, accuracy within tolerance and ECE on the valid pixels of a batch."""
    mask = valid.bool()
    epe = losses.endpoint_error(flow, truth)[mask]
    correct = (epe < config.tolerance_px).float()
    return {
        "epe_px": epe.mean().item(),
        "accuracy": correct.mean().item(),
        "ece": losses.expected_calibration_error(confidence[mask], correct),
    }
