"""Synthetic contrasts: label map -> CT-like or MR-like image, plus image corruptions.

``RandomContrast`` / ``RandomCorruption`` only draw parameters from a ``numpy.random.Generator``;
``apply_contrast`` / ``apply_corruption`` apply them deterministically (the noise realisation is
part of the parameters, as a seed), so every image is reproducible from its parameters.
Images are 2D ``(H, W)`` float32 arrays in [0, 1] (the pipeline's normalised intensities).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum, IntEnum

import numpy as np
from scipy import ndimage


class Tissue(IntEnum):
    """Tissue classes that decide the intensity ordering of a contrast."""

    AIR = 0
    CSF = 1
    GREY = 2
    WHITE = 3
    FAT = 4
    BONE = 5
    SOFT = 6  # muscle, skin, other soft tissue


class Contrast(str, Enum):
    """Synthetic contrast styles."""

    CT = "ct"  # Hounsfield-like classes, then the CT window of the pipeline
    T1 = "t1"
    T2 = "t2"
    PD = "pd"
    FLAIR = "flair"
    RANDOM = "random"  # SynthSeg-style: every label an independent random intensity


#: Mean intensity of each tissue (order of :class:`Tissue`): HU for CT, [0, 1] for MR.
CLASS_MEANS: dict[Contrast, tuple[float, ...]] = {
    Contrast.CT: (-1000.0, 8.0, 40.0, 28.0, -100.0, 1000.0, 50.0),
    Contrast.T1: (0.0, 0.15, 0.45, 0.70, 0.90, 0.08, 0.40),
    Contrast.T2: (0.0, 0.95, 0.55, 0.40, 0.70, 0.05, 0.30),
    Contrast.PD: (0.0, 0.80, 0.70, 0.55, 0.80, 0.10, 0.55),
    Contrast.FLAIR: (0.0, 0.08, 0.60, 0.45, 0.60, 0.05, 0.35),
}

_CSF = (4, 5, 14, 15, 24, 30, 43, 44, 62, 72)
_WHITE = (2, 7, 16, 41, 46, 85)


def brain_tissue_classes(labels: np.ndarray) -> dict[int, int]:
    """FreeSurfer/SynthSeg label value -> :class:`Tissue`; extra-cerebral labels (>= 500) -> -1.

    -1 means "draw a class at random for every image" (their anatomy is not documented here).
    """
    classes = {}
    for value in (int(v) for v in labels):
        if value == 0:
            classes[value] = int(Tissue.AIR)
        elif value >= 500:
            classes[value] = -1
        elif value in _CSF:
            classes[value] = int(Tissue.CSF)
        elif value in _WHITE:
            classes[value] = int(Tissue.WHITE)
        else:
            classes[value] = int(Tissue.GREY)
    return classes


@dataclass(frozen=True, eq=False)
class CorruptionParams:
    """Image corruptions, applied in this order: remap, blur, resolution, bias, gamma, noise, invert."""

    remap_knots: np.ndarray | None = None  # (K,) intensity look-up at K even steps of [0, 1]
    blur_sigma_px: float = 0.0  # Gaussian blur, pixels
    resolution_factor: float = 1.0  # >1: down- then up-sample along one axis
    resolution_axis: int = 0  # axis of the resolution loss (0: rows, 1: columns)
    log_bias: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))  # (h, w) coarse log bias
    log_gamma: float = 0.0  # intensity ** exp(log_gamma)
    noise_std: float = 0.0  # Gaussian noise std (image units, [0, 1] scale)
    noise_seed: int = 0  # seed of the noise realisation
    invert: bool = False  # 1 - intensity at the end


@dataclass(frozen=True, eq=False)
class ContrastParams:
    """Label -> intensity assignment of one synthetic image, plus its corruptions."""

    contrast: str  # a :class:`Contrast` value
    label_values: np.ndarray  # (L,) label values with an intensity
    means: np.ndarray  # (L,) mean intensity of each label (HU for CT)
    stds: np.ndarray  # (L,) within-label texture std (same unit)
    window: tuple[float, float] | None  # CT window mapped to [0, 1]; None for MR
    corruption: CorruptionParams  # applied after the window


@dataclass(frozen=True)
class RandomCorruption:
    """Draws :class:`CorruptionParams`. Each field: the maximum strength."""

    remap_probability: float = 0.3  # chance of a random monotone intensity remap
    max_blur_sigma_px: float = 1.0  # blur sigma ~ U(0, max)
    max_resolution_factor: float = 2.0  # factor ~ U(1, max) with probability 0.3
    max_log_bias: float = 0.3  # coarse log-bias std ~ U(0, max)
    log_gamma_std: float = 0.25  # log gamma ~ N(0, std)
    max_noise_std: float = 0.04  # noise std ~ U(0, max)
    invert_probability: float = 0.0  # chance of 1 - x
    nonmonotone_probability: float = 0.0  # chance of a non-monotone look-up (0 stays 0): a new "contrast"

    def __call__(self, rng: np.random.Generator) -> CorruptionParams:
        knots = None
        if rng.random() < self.remap_probability:
            knots = np.sort(rng.random(8))
            knots = (knots - knots[0]) / max(knots[-1] - knots[0], 1e-6)
        degrade = rng.random() < 0.3
        params = CorruptionParams(
            remap_knots=knots,
            blur_sigma_px=float(rng.uniform(0, self.max_blur_sigma_px)),
            resolution_factor=float(rng.uniform(1, self.max_resolution_factor)) if degrade else 1.0,
            resolution_axis=int(rng.integers(2)),
            log_bias=rng.normal(0, rng.uniform(0, self.max_log_bias), (3, 3)),
            log_gamma=float(rng.normal(0, self.log_gamma_std)),
            noise_std=float(rng.uniform(0, self.max_noise_std)),
            noise_seed=int(rng.integers(2**31)),
            invert=bool(rng.random() < self.invert_probability),
        )
        if self.nonmonotone_probability > 0 and rng.random() < self.nonmonotone_probability:
            params = replace(params, remap_knots=nonmonotone_knots(rng))
        return params


def nonmonotone_knots(rng: np.random.Generator, n_knots: int = 8) -> np.ndarray:
    """Look-up knots of a real-scanner-like contrast change: background (0) stays dark, every other
    intensity level gets a random brightness in [0.05, 1] (tissue orderings can swap, as between
    T1, T2 and FLAIR)."""
    return np.concatenate([[0.0], rng.uniform(0.05, 1.0, n_knots - 1)])


@dataclass(frozen=True)
class RandomContrast:
    """Draws :class:`ContrastParams` for the labels of one image."""

    contrasts: tuple[str, ...] = ("ct", "t1", "t2", "pd", "flair", "random")  # chosen uniformly
    label_jitter: float = 0.06  # per-label mean jitter (MR units; x 300 HU for CT)
    skull_strip_probability: float = 0.25  # extra-cerebral labels set to air (brain-extracted data)
    corruption: RandomCorruption = field(default_factory=RandomCorruption)

    def __call__(
        self, rng: np.random.Generator, label_values: np.ndarray, classes: dict[int, int] | None
    ) -> ContrastParams:
        contrast = Contrast(self.contrasts[int(rng.integers(len(self.contrasts)))])
        tissue = _tissues(rng, label_values, classes, rng.random() < self.skull_strip_probability)
        means, stds = _label_means(rng, contrast, tissue, self.label_jitter)
        window = (float(rng.uniform(-1100, -900)), float(rng.uniform(1300, 1700)))
        return ContrastParams(
            contrast=contrast.value,
            label_values=np.asarray(label_values),
            means=means,
            stds=stds,
            window=window if contrast is Contrast.CT else None,
            corruption=self.corruption(rng),
        )


def _tissues(rng, label_values, classes, skull_strip: bool) -> np.ndarray:
    """(L,) tissue class per label: from ``classes``, random where unknown, AIR for label 0."""
    random_classes = (Tissue.CSF, Tissue.GREY, Tissue.FAT, Tissue.BONE, Tissue.SOFT, Tissue.WHITE)
    tissue = np.empty(len(label_values), dtype=int)
    for index, value in enumerate(int(v) for v in label_values):
        known = -1 if classes is None else classes.get(value, -1)
        if value == 0:
            known = int(Tissue.AIR)
        elif known == -1 and classes is not None and skull_strip:
            known = int(Tissue.AIR)
        tissue[index] = known if known >= 0 else int(rng.choice(random_classes))
    return tissue


def _label_means(rng, contrast: Contrast, tissue: np.ndarray, jitter: float):
    """(L,) means and (L,) texture stds of every label for ``contrast``."""
    n = len(tissue)
    if contrast is Contrast.RANDOM:
        means = rng.uniform(0, 1, n)
        means[tissue == Tissue.AIR] = rng.uniform(0, 0.1)
        return means, rng.uniform(0, 0.03, n)
    class_means = np.asarray(CLASS_MEANS[contrast])
    scale = 300.0 if contrast is Contrast.CT else 1.0
    class_shift = rng.normal(0, jitter * scale, len(class_means))  # whole-class shift
    means = class_means[tissue] + class_shift[tissue] + rng.normal(0, jitter * scale / 2, n)
    means[tissue == Tissue.AIR] = class_means[Tissue.AIR]
    return means, rng.uniform(0, 0.02 * scale, n)


def apply_contrast(labels_hw: np.ndarray, params: ContrastParams) -> np.ndarray:
    """Synthesise an image ``(H, W)`` in [0, 1] from integer labels ``(H, W)``."""
    noise = np.random.default_rng(params.corruption.noise_seed + 1).standard_normal(labels_hw.shape)
    index = np.searchsorted(params.label_values, labels_hw)
    index = np.clip(index, 0, len(params.label_values) - 1)
    image = params.means[index] + params.stds[index] * noise
    if params.window is not None:
        low, high = params.window
        image = (image - low) / (high - low)
    return apply_corruption(np.clip(image, 0.0, 1.0).astype(np.float32), params.corruption)


def apply_corruption(image_hw: np.ndarray, params: CorruptionParams) -> np.ndarray:
    """Apply :class:`CorruptionParams` to an image ``(H, W)`` in [0, 1]; returns float32 in [0, 1]."""
    image = image_hw.astype(np.float64)
    if params.remap_knots is not None:
        image = np.interp(image, np.linspace(0, 1, len(params.remap_knots)), params.remap_knots)
    if params.blur_sigma_px > 0:
        image = ndimage.gaussian_filter(image, params.blur_sigma_px, mode="nearest")
    image = _lose_resolution(image, params.resolution_factor, params.resolution_axis)
    bias = ndimage.zoom(params.log_bias, np.divide(image.shape, params.log_bias.shape), order=1)
    image = np.clip(image * np.exp(bias[: image.shape[0], : image.shape[1]]), 0, None)
    image = _rescale(image) ** np.exp(params.log_gamma)
    noise = np.random.default_rng(params.noise_seed).standard_normal(image.shape)
    image = _rescale(image + params.noise_std * noise)
    return (1.0 - image if params.invert else image).astype(np.float32)


def _lose_resolution(image: np.ndarray, factor: float, axis: int) -> np.ndarray:
    """Down-sample by ``factor`` along ``axis`` and back (linear), same shape."""
    if factor <= 1.0:
        return image
    n = image.shape[axis]
    coarse = np.linspace(0, n - 1, max(int(round(n / factor)), 2))
    low = ndimage.map_coordinates(image, _coords(image.shape, axis, coarse), order=1, mode="nearest")
    back = np.linspace(0, len(coarse) - 1, n)
    return ndimage.map_coordinates(low, _coords(low.shape, axis, back), order=1, mode="nearest")


def _coords(shape: tuple[int, int], axis: int, positions: np.ndarray) -> np.ndarray:
    """(2, ...) sampling coordinates replacing ``axis`` by ``positions``."""
    grids = [np.arange(shape[0], dtype=float), np.arange(shape[1], dtype=float)]
    grids[axis] = positions
    return np.stack(np.meshgrid(*grids, indexing="ij"))


def _rescale(image: np.ndarray) -> np.ndarray:
    """Map the 0.5-99.5 percentile range to [0, 1], clipped (the pipeline's MR normalisation)."""
    low, high = np.percentile(image, [0.5, 99.5])
    return np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
