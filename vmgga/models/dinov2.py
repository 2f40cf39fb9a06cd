"""DINOv2 patch features from a LOCAL directory (no network access, ever).

The user provides a directory written by ``transformers``' ``save_pretrained`` (``config.json`` +
weights). :func:`load_dinov2` loads it with ``local_files_only=True``; :func:`dinov2_patch_features`
turns a grey-level slice into a patch feature map. The matcher's ``dinov2`` backend
(:mod:`vmgga.models.encoder`) and :class:`vmgga.features.dinov2.Dinov2FeatureExtractor` (3D,
slice-wise) build on them; the loader sits in ``models`` so that models never import ``features``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.errors import ConfigError, InputError
from vmgga.extras import import_optional

#: ImageNet statistics DINOv2 was trained with (RGB).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def load_dinov2(path: str | Path | None, device: str | torch.device = "cpu") -> nn.Module:
    """A frozen ``transformers.Dinov2Model`` from a local directory, in eval mode.

    Raises:
        ConfigError: if no directory is given.
        InputError: if the directory does not hold a loadable DINOv2 model.
    """
    if path is None:
        raise ConfigError("the dinov2 backend needs a local model directory (dinov2_path); none was given")
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path} is not a DINOv2 model directory (no config.json; use save_pretrained)")
    # heavy import, only when this backend is used
    transformers = import_optional("transformers", extra="dinov2", feature="the dinov2 backend")
    Dinov2Model = transformers.Dinov2Model

    try:
        model = Dinov2Model.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load a DINOv2 model from {path}: {error}") from error
    model.requires_grad_(False)
    return model.eval().to(device)


def dinov2_input(image: Tensor, patch_size: int, scale: float) -> Tensor:
    """Grey ``(B, 1, H, W)`` in ~[0, 1] -> ImageNet-normalised RGB resized to patch multiples."""
    h, w = image.shape[-2:]
    size = (max(patch_size, round(h * scale / patch_size) * patch_size),
            max(patch_size, round(w * scale / patch_size) * patch_size))  # fmt: skip
    resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor(_IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (resized.clamp(0, 1).expand(-1, 3, -1, -1) - mean) / std


@torch.no_grad()
def dinov2_patch_features(model: nn.Module, image: Tensor, scale: float = 1.0) -> Tensor:
    """Patch tokens of ``image (B, 1, H, W)`` as a map ``(B, hidden, Hp, Wp)``.

    ``Hp = round(H * scale / patch)``: each token covers ``patch / scale`` input pixels.
    """
    patch = int(model.config.patch_size)
    pixels = dinov2_input(image, patch, scale)
    hidden = model(pixel_values=pixels).last_hidden_state  # (B, 1 + Hp * Wp, C)
    hp, wp = pixels.shape[-2] // patch, pixels.shape[-1] // patch
    tokens = hidden[:, hidden.shape[1] - hp * wp :]  # drop the class (and register) tokens
    return tokens.transpose(1, 2).reshape(image.shape[0], -1, hp, wp)
