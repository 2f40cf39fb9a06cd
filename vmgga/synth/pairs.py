"""Training pairs: a 2D source plane -> two images with a known dense correspondence.

A pair is drawn by :class:`RandomPair` (parameters only, from a seed) and built by
:func:`make_pair` (deterministic). Image 1 is a crop of the source plane; image 0 samples the
same plane at ``x + flow01_px(x)`` (:mod:`vmgga.synth.deformation`), so ``flow01_px`` is exact.
Label planes get two independent synthetic contrasts (cross-modal pairs); intensity planes
(real scans) get two independent corruptions (the self-supervised "two views").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy import ndimage

from vmgga.synth.contrast import (
    ContrastParams,
    CorruptionParams,
    RandomContrast,
    RandomCorruption,
    apply_contrast,
    apply_corruption,
)
from vmgga.synth.deformation import (
    DeformationParams,
    RandomDeformation,
    flow01_px,
    sample_linear,
    sample_nearest,
    valid_mask,
)
from vmgga.synth.sources import SourceKind, SourceVolume

#: Source index meaning "a smooth random shapes label map" (no anatomy).
SHAPES_SOURCE = -1


@dataclass(frozen=True, eq=False)
class PlaneParams:
    """Which 2D plane of which source, and how it is oriented and cropped."""

    source_index: int  # index into the source list, or SHAPES_SOURCE
    axis: int  # slicing axis of the (D, H, W) volume: 0, 1 or 2
    slice_fraction: float  # position along the axis, fraction of its length
    rot90: int  # number of 90-degree rotations of the plane
    flip: bool  # mirror the plane left-right
    crop_fraction: tuple[float, float]  # crop offset of image 1 within the padded plane, [0, 1]
    shapes_logits: np.ndarray | None = None  # (K, h, w) coarse logits of a shapes label map


@dataclass(frozen=True, eq=False)
class PairParams:
    """Everything that decides one training pair."""

    plane: PlaneParams
    deformation: DeformationParams
    appearance0: ContrastParams | CorruptionParams  # contrast (label source) or corruption
    appearance1: ContrastParams | CorruptionParams


@dataclass(frozen=True, eq=False)
class SyntheticPair:
    """Two images and their ground truth. Arrays, pixels, (x, y) channel order."""

    image0: np.ndarray  # (H, W) float32 in [0, 1]
    image1: np.ndarray  # (H, W) float32 in [0, 1]
    flow01_px: np.ndarray  # (2, H, W): image-0 pixel x -> image-1 position x + flow
    valid: np.ndarray  # (H, W) bool: x + flow inside image 1 and on the source
    labels0: np.ndarray | None  # (H, W) labels of image 0 (label sources only)
    labels1: np.ndarray | None  # (H, W) labels of image 1


@dataclass(frozen=True)
class RandomPair:
    """Draws :class:`PairParams` for a list of sources."""

    crop_hw: tuple[int, int] = (96, 96)  # size of both images, pixels
    margin_px: int = 16  # padding around the plane so that image 0 can look outside image 1
    shapes_probability: float = 0.2  # chance of a shapes label map instead of a source
    shapes_labels: tuple[int, int] = (4, 12)  # number of labels of a shapes map
    same_contrast_probability: float = 0.0  # label pairs sharing one contrast (own corruptions)
    deformation: RandomDeformation = field(default_factory=RandomDeformation)
    contrast: RandomContrast = field(default_factory=RandomContrast)
    corruption: RandomCorruption = field(default_factory=lambda: RandomCorruption(remap_probability=0.5))

    def __call__(self, rng: np.random.Generator, sources: list[SourceVolume]) -> PairParams:
        plane = self._plane(rng, len(sources))
        kind = SourceKind.LABELS if plane.source_index == SHAPES_SOURCE else sources[plane.source_index].kind
        deformation = self.deformation(rng)
        if kind is SourceKind.INTENSITY:
            return PairParams(plane, deformation, self.corruption(rng), self.corruption(rng))
        values, classes = self._label_values(plane, sources)
        contrast0, contrast1 = self.contrast(rng, values, classes), self.contrast(rng, values, classes)
        if self.same_contrast_probability > 0 and rng.random() < self.same_contrast_probability:
            contrast1 = replace(contrast0, corruption=contrast1.corruption)
        return PairParams(plane, deformation, contrast0, contrast1)

    def _plane(self, rng: np.random.Generator, n_sources: int) -> PlaneParams:
        shapes = n_sources == 0 or rng.random() < self.shapes_probability
        logits = None
        if shapes:
            n_labels = int(rng.integers(self.shapes_labels[0], self.shapes_labels[1] + 1))
            grid = int(rng.integers(4, 9))
            logits = rng.normal(size=(n_labels, grid, grid))
        return PlaneParams(
            source_index=SHAPES_SOURCE if shapes else int(rng.integers(n_sources)),
            axis=int(rng.integers(3)),
            slice_fraction=float(rng.uniform(0.2, 0.8)),
            rot90=int(rng.integers(4)),
            flip=bool(rng.random() < 0.5),
            crop_fraction=tuple(rng.uniform(0.15, 0.85, 2).tolist()),
            shapes_logits=logits,
        )

    def _label_values(self, plane: PlaneParams, sources: list[SourceVolume]):
        """Sorted label values that can appear in the pair, and their tissue classes."""
        if plane.source_index == SHAPES_SOURCE:
            return np.arange(len(plane.shapes_logits)), None
        source = sources[plane.source_index]
        return np.unique(source_plane(plane, sources, self.crop_hw, self.margin_px)), source.tissue_classes


def source_plane(
    plane: PlaneParams, sources: list[SourceVolume], crop_hw: tuple[int, int], margin_px: int
) -> np.ndarray:
    """The oriented 2D plane, zero-padded to at least ``crop + 2 margin`` on each axis."""
    if plane.source_index == SHAPES_SOURCE:
        size = (crop_hw[0] + 2 * margin_px, crop_hw[1] + 2 * margin_px)
        logits = plane.shapes_logits
        zoom = (1, size[0] / logits.shape[1], size[1] / logits.shape[2])
        array = np.argmax(ndimage.zoom(logits, zoom, order=3), axis=0).astype(np.int16)
    else:
        volume = sources[plane.source_index].array_dhw
        index = int(plane.slice_fraction * (volume.shape[plane.axis] - 1))
        array = np.take(volume, index, axis=plane.axis)
    array = np.rot90(array, plane.rot90)
    array = np.fliplr(array) if plane.flip else array
    sizes = zip(array.shape, crop_hw, strict=True)
    pad = [(max(margin_px, (c + 2 * margin_px - s + 1) // 2),) * 2 for s, c in sizes]
    return np.pad(np.ascontiguousarray(array), pad)


def make_pair(
    params: PairParams, sources: list[SourceVolume], crop_hw: tuple[int, int], margin_px: int = 16
) -> SyntheticPair:
    """Build the pair decided by ``params`` (deterministic)."""
    plane = source_plane(params.plane, sources, crop_hw, margin_px)
    row0 = int(params.plane.crop_fraction[0] * (plane.shape[0] - crop_hw[0]))
    col0 = int(params.plane.crop_fraction[1] * (plane.shape[1] - crop_hw[1]))
    flow = flow01_px(params.deformation, crop_hw)
    y, x = np.meshgrid(np.arange(crop_hw[0]), np.arange(crop_hw[1]), indexing="ij")
    positions = np.stack([x + flow[0] + col0, y + flow[1] + row0])  # (2, H, W) in plane pixels
    crop1 = plane[row0 : row0 + crop_hw[0], col0 : col0 + crop_hw[1]]
    if isinstance(params.appearance0, ContrastParams):
        labels0 = sample_nearest(plane, positions)
        image0 = apply_contrast(labels0, params.appearance0)
        image1 = apply_contrast(crop1, params.appearance1)
        return SyntheticPair(image0, image1, flow, valid_mask(flow, crop_hw), labels0, crop1.copy())
    image0 = apply_corruption(sample_linear(plane.astype(np.float64), positions), params.appearance0)
    image1 = apply_corruption(crop1, params.appearance1)
    return SyntheticPair(image0, image1, flow, valid_mask(flow, crop_hw), None, None)


@dataclass
class PairSampler:
    """Reproducible pairs: ``sampler.pair(seed)`` is always the same pair for the same sources."""

    sources: list[SourceVolume]
    random_pair: RandomPair = field(default_factory=RandomPair)

    def params(self, seed: int) -> PairParams:
        """The parameters of pair ``seed``."""
        return self.random_pair(np.random.default_rng(seed), self.sources)

    def pair(self, seed: int) -> SyntheticPair:
        """Pair number ``seed``."""
        rp = self.random_pair
        return make_pair(self.params(seed), self.sources, rp.crop_hw, rp.margin_px)

    def batch(self, seeds: list[int]) -> dict[str, torch.Tensor]:
        """Collated pairs (see :func:`collate`)."""
        return collate([self.pair(int(s)) for s in seeds])


@dataclass
class MixedSampler:
    """Pairs from one of several samplers, chosen by the pair's seed (so still a pure function of it).

    ``weights`` are the chances of each sampler; pair ``seed`` always comes from the same one.
    """

    samplers: list[PairSampler]
    weights: tuple[float, ...]

    def which(self, seed: int) -> int:
        """Index of the sampler that draws pair ``seed``."""
        p = np.asarray(self.weights, dtype=float)
        return int(np.random.default_rng([int(seed), 0x5EED]).choice(len(p), p=p / p.sum()))

    def pair(self, seed: int) -> SyntheticPair:
        """Pair number ``seed`` of the sampler it falls to."""
        return self.samplers[self.which(seed)].pair(seed)

    def batch(self, seeds: list[int]) -> dict[str, torch.Tensor]:
        """Collated pairs (see :func:`collate`)."""
        return collate([self.pair(int(s)) for s in seeds])


def collate(pairs: list[SyntheticPair]) -> dict[str, torch.Tensor]:
    """Stack pairs: image0/image1 ``(B, 1, H, W)``, flow01_px ``(B, 2, H, W)``, valid ``(B, 1, H, W)``."""
    return {
        "image0": torch.from_numpy(np.stack([p.image0 for p in pairs])[:, None]),
        "image1": torch.from_numpy(np.stack([p.image1 for p in pairs])[:, None]),
        "flow01_px": torch.from_numpy(np.stack([p.flow01_px for p in pairs])),
        "valid": torch.from_numpy(np.stack([p.valid for p in pairs])[:, None]),
    }
