"""The stride-1 pixel head: descriptors that are closest to their match exactly at it.

The matcher's fine descriptors live at stride 2 and are trained to *pick* a match (a softmax over a
window of cells). As a similarity for the 3D instance optimisation they are too flat: their SSD
barely changes within 25 % of the true displacement and is lowest short of it (docs/training_report.md,
"Session 6"). This head looks at every pixel: it refines the visual encoder's first pyramid level
(upsampled to the pixels), the image and its 2D MIND-SSC into unit-norm descriptors, trained with the
rest of the network frozen so that a pixel's descriptor is closer to its true match than to any other
pixel within a window around it (:func:`vmgga.training.losses.local_window_nce`).

Shapes: every input and the output are ``(B, C, H, W)`` at the image's own pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmgga.models.mind2d import MIND2D_CHANNELS


class PixelHead(nn.Module):
    """``[image (1), MIND (4), level (C_0)]`` -> ``out_channels`` unit-norm descriptors per pixel.

    Three 3x3 convolutions (the middle one dilated by 2: a 11 x 11 px receptive field on top of
    the level's), then a 1x1 projection.
    """

    def __init__(self, level_channels: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.net = nn.Sequential(
            nn.Conv2d(1 + MIND2D_CHANNELS + level_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, out_channels, 1),
        )

    def forward(self, image: Tensor, mind: Tensor, level: Tensor) -> Tensor:
        """``(B, 1, H, W)``, ``(B, 4, H, W)``, ``(B, C_0, H, W)`` -> ``(B, out_channels, H, W)``, unit norm."""
        inputs = torch.cat([image, mind, level], 1)
        if self.net[0].weight.is_contiguous(memory_format=torch.channels_last):
            # weights in channels-last layout (vmgga.features.learned.use_channels_last): inputs too,
            # else every convolution converts (the head runs about 30 % slower)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.net(inputs), dim=1)
