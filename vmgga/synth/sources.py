"""3D sources of training slices: real brain label maps, intensity-clustered scans, real volumes.

Every source is resampled once, at load time, to the isotropic working spacing of the pipeline
(1.5 mm by default) and cropped to its foreground box. Arrays are ``(D, H, W)`` numpy arrays as
nibabel/SimpleITK voxel order gives them; training is 2D, so the axis order only decides which
three slice orientations exist (all three are sampled).

Split of the SynthSeg brain label maps (``training_seg_XX.nii.gz``): maps 1-16 train, maps
17-20 are held out (never seen in training; used by :mod:`vmgga.training.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from scipy import ndimage

from vmgga.errors import InputError

#: SynthSeg label maps used for training and the held-out ones (1-based file numbers).
TRAIN_LABEL_MAP_IDS: tuple[int, ...] = tuple(range(1, 17))
HELDOUT_LABEL_MAP_IDS: tuple[int, ...] = (17, 18, 19, 20)


class SourceKind(str, Enum):
    """What a source volume holds."""

    LABELS = "labels"  # integer label map: images are synthesised from it
    INTENSITY = "intensity"  # a real scan in [0, 1]: images are augmented copies of it


@dataclass(frozen=True, eq=False)
class SourceVolume:
    """One 3D source at the working spacing.

    Attributes:
        name: Where it came from (file name and processing), for the training record.
        kind: Labels or intensities.
        array_dhw: ``(D, H, W)`` int16 labels (0 = background) or float32 intensities in [0, 1].
        tissue_classes: For brain label maps, the tissue class of every label value (see
            :mod:`vmgga.synth.contrast`); None: every label draws a random class.
    """

    name: str
    kind: SourceKind
    array_dhw: np.ndarray
    tissue_classes: dict[int, int] | None = None


def label_map_path(root: str | Path, map_id: int) -> Path:
    """Path of SynthSeg label map number ``map_id`` (1-20) under ``root``."""
    return Path(root) / f"training_seg_{map_id:02d}.nii.gz"


def read_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Voxel array ``(D, H, W)`` and spacing (mm, same axis order) of a NIfTI/NRRD file."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"training source {path} does not exist")
    image = sitk.ReadImage(str(path))
    spacing_ijk = image.GetSpacing()
    return sitk.GetArrayFromImage(image), tuple(float(s) for s in reversed(spacing_ijk))


def resample_nearest_dhw(array_dhw: np.ndarray, spacing_dhw: tuple, target_mm: float) -> np.ndarray:
    """Nearest-neighbour resampling by index picking (exact labels, no interpolation)."""
    index = [
        np.clip(np.round(np.arange(0, n * s / target_mm) * target_mm / s), 0, n - 1).astype(int)
        for n, s in zip(array_dhw.shape, spacing_dhw, strict=True)
    ]
    return array_dhw[np.ix_(*index)]


def resample_linear_dhw(array_dhw: np.ndarray, spacing_dhw: tuple, target_mm: float) -> np.ndarray:
    """Linear resampling of an intensity volume to ``target_mm`` isotropic spacing."""
    zoom = [s / target_mm for s in spacing_dhw]
    return ndimage.zoom(array_dhw.astype(np.float32), zoom, order=1)


def crop_to_foreground(array_dhw: np.ndarray, margin: int = 4) -> np.ndarray:
    """Crop to the bounding box of ``array > 0`` plus ``margin`` voxels."""
    nonzero = np.argwhere(array_dhw > 0)
    if nonzero.size == 0:
        raise InputError("training source has no foreground")
    low = np.maximum(nonzero.min(0) - margin, 0)
    high = np.minimum(nonzero.max(0) + margin + 1, array_dhw.shape)
    return array_dhw[low[0] : high[0], low[1] : high[1], low[2] : high[2]]


def normalise_percentiles(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the robust range of the foreground (``> 0``) to [0, 1], clipped; float32."""
    values = array[array > 0] if np.any(array > 0) else array.ravel()
    lo, hi = np.percentile(values, [low, high])
    return np.clip((array - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def load_label_map_source(path: str | Path, spacing_mm: float = 1.5) -> SourceVolume:
    """A SynthSeg brain label map at ``spacing_mm``, with FreeSurfer labels -> tissue classes."""
    from vmgga.synth.contrast import brain_tissue_classes

    labels, spacing = read_volume(path)
    labels = resample_nearest_dhw(labels.astype(np.int16), spacing, spacing_mm)
    labels = crop_to_foreground(labels)
    classes = brain_tissue_classes(np.unique(labels))
    return SourceVolume(f"{Path(path).name}@{spacing_mm}mm", SourceKind.LABELS, labels, classes)


def load_intensity_source(path: str | Path, spacing_mm: float = 1.5) -> SourceVolume:
    """A real scan at ``spacing_mm``, normalised to [0, 1] (for the self-supervised stage)."""
    volume, spacing = read_volume(path)
    volume = resample_linear_dhw(volume.astype(np.float32), spacing, spacing_mm)
    volume = crop_to_foreground(normalise_percentiles(volume))
    return SourceVolume(f"{Path(path).name}@{spacing_mm}mm", SourceKind.INTENSITY, volume)


def cluster_labels(volume01: np.ndarray, n_clusters: int, threshold: float = 0.02) -> np.ndarray:
    """Label map from intensity quantiles: background 0, then ``n_clusters`` classes.

    Args:
        volume01: Intensities in [0, 1], any shape.
        n_clusters: Number of foreground classes (equal-count quantile bins of the foreground).
        threshold: Intensities at or below it are background.
    """
    foreground = volume01 > threshold
    edges = np.quantile(volume01[foreground], np.linspace(0, 1, n_clusters + 1)[1:-1])
    labels = np.digitize(volume01, edges).astype(np.int16) + 1
    labels[~foreground] = 0
    return labels


def load_cluster_source(path: str | Path, n_clusters: int = 8, spacing_mm: float = 1.5) -> SourceVolume:
    """A label map made by intensity clustering of a real scan (:func:`cluster_labels`)."""
    intensity = load_intensity_source(path, spacing_mm)
    labels = cluster_labels(intensity.array_dhw, n_clusters)
    return SourceVolume(f"{intensity.name}:quantiles{n_clusters}", SourceKind.LABELS, labels)
