"""SgMg's multi-granularity segment-and-optimize (the official ``MSO``): a coarse mask prior, 16 channels at
stride 8 (whose pixel shuffle is the stride-2 prior mask), is refined with the image backbone's own features:

    prior (N, 16, H/8, W/8) ─cat stride-8 features─ReLU─3x3 conv─ReLU─3x3 conv─> + prior
                            ─bilinear to stride 4─cat stride-4 features─ReLU─3x3 conv─ReLU─3x3 conv─> + itself
                            ─pixel shuffle x4─> the mask logits at full resolution (N, 1, H, W)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentOptimize(nn.Module):
    def __init__(self, mask_dim: int, image_dims: tuple[int, int], upscale: int = 4):
        """mask_dim: the prior's channels; image_dims: the channels of the stride-4 and stride-8 features."""
        super().__init__()
        self.upscale = upscale
        self.conv1_1div8 = nn.Conv2d(mask_dim + image_dims[1], mask_dim, 3, padding=1)
        self.conv2_1div8 = nn.Conv2d(mask_dim, mask_dim, 3, padding=1)
        self.conv1_1div4 = nn.Conv2d(mask_dim + image_dims[0], mask_dim, 3, padding=1)
        self.conv2_1div4 = nn.Conv2d(mask_dim, mask_dim, 3, padding=1)

    def forward(self, prior: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor) -> torch.Tensor:
        """prior (N, C, h8, w8); the same frames' backbone features at strides 4 and 8 -> logits (N, 1, H, W)."""
        x = F.relu(torch.cat([prior, stride8], 1))
        x = prior + self.conv2_1div8(F.relu(self.conv1_1div8(x)))
        x = F.interpolate(x, size=stride4.shape[-2:], mode="bilinear", align_corners=False)
        y = F.relu(torch.cat([x, stride4], 1))
        x = x + self.conv2_1div4(F.relu(self.conv1_1div4(y)))
        return F.pixel_shuffle(x, self.upscale)
