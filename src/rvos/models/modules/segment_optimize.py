"""SgMg's multi-granularity segment-and-optimize (the official ``MSO``): a coarse mask prior, 16 channels at
stride 8 (whose pixel shuffle is the stride-2 prior mask), is refined with the image backbone's own features:

    prior (N, 16, H/8, W/8) ─cat stride-8 features─ReLU─3x3 conv─ReLU─3x3 conv─> + prior
                            ─bilinear to stride 4─cat stride-4 features─ReLU─3x3 conv─ReLU─3x3 conv─> + itself
                            ─pixel shuffle x4─> the mask logits at full resolution (N, 1, H, W)

With ``fine_channels`` (a CPU-size option, not the official module) a third stage reads the frames themselves at
stride 2 (:class:`~rvos.models.modules.pixel_decoder.FineStem`'s map): the stride-4 result is pixel-shuffled x2 in the
order that keeps the last shuffle's, refined as the stages before against the stem's map, then pixel-shuffled x2 to
full resolution. Its last convolution starts at zero, so the module starts as the official one. On the synthetic
benchmark's frames (96 pixels high) the backbone's stride-4 map is the finest the official module reads, and an
object of 10 pixels is 2 or 3 of its cells wide: its edges are guessed from the cells, where the frames show them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentOptimize(nn.Module):
    def __init__(self, mask_dim: int, image_dims: tuple[int, int], upscale: int = 4, fine_channels: int = 0):
        """mask_dim: the prior's channels; image_dims: the channels of the stride-4 and stride-8 features;
        fine_channels: those of the stride-2 map of the third stage (0: none, the official two stages)."""
        super().__init__()
        if fine_channels and (upscale != 4 or mask_dim % 16):
            raise ValueError("the stride-2 stage splits the x4 pixel shuffle of a multiple of 16 channels in two")
        self.upscale = upscale
        self.conv1_1div8 = nn.Conv2d(mask_dim + image_dims[1], mask_dim, 3, padding=1)
        self.conv2_1div8 = nn.Conv2d(mask_dim, mask_dim, 3, padding=1)
        self.conv1_1div4 = nn.Conv2d(mask_dim + image_dims[0], mask_dim, 3, padding=1)
        self.conv2_1div4 = nn.Conv2d(mask_dim, mask_dim, 3, padding=1)
        self.fine = None
        if fine_channels:
            shuffled = mask_dim // 4
            self.fine = nn.Sequential(nn.Conv2d(shuffled + fine_channels, fine_channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(fine_channels, shuffled, 3, padding=1))
            nn.init.zeros_(self.fine[-1].weight)
            nn.init.zeros_(self.fine[-1].bias)

    def forward(self, prior: torch.Tensor, stride4: torch.Tensor, stride8: torch.Tensor,
                stride2: torch.Tensor | None = None) -> torch.Tensor:
        """prior (N, C, h8, w8); the same frames' backbone features at strides 4 and 8, and with ``fine_channels``
        the stem's map at stride 2 -> logits (N, C / 16, H, W). Without ``stride2`` the stride-2 stage is left out:
        the official module's output, as its stage starts."""
        x = F.relu(torch.cat([prior, stride8], 1))
        x = prior + self.conv2_1div8(F.relu(self.conv1_1div8(x)))
        x = F.interpolate(x, size=stride4.shape[-2:], mode="bilinear", align_corners=False)
        y = F.relu(torch.cat([x, stride4], 1))
        x = x + self.conv2_1div4(F.relu(self.conv1_1div4(y)))
        if self.fine is None or stride2 is None:
            return F.pixel_shuffle(x, self.upscale)
        x = shuffle_half(x)
        return F.pixel_shuffle(x + self.fine(F.relu(torch.cat([x, stride2], 1))), 2)


def shuffle_half(x: torch.Tensor) -> torch.Tensor:
    """(N, 16k, h, w) -> (N, 4k, 2h, 2w), the first half of ``pixel_shuffle(x, 4)``: ``pixel_shuffle(.., 2)`` of it
    equals ``pixel_shuffle(x, 4)``. The x4 shuffle puts channel 16c + 4i + j at row offset i and column offset j; with
    i = 2a + a' and j = 2b + b', this puts it at offset (a, b) of channel 4c + 2a' + b', which the x2 shuffle then puts
    at offset (a', b')."""
    n, c, h, w = x.shape
    x = x.view(n, c // 16, 2, 2, 2, 2, h, w)  # (c, a, a', b, b')
    return x.permute(0, 1, 3, 5, 6, 2, 7, 4).reshape(n, c // 4, 2 * h, 2 * w)


def unshuffle_half(x: torch.Tensor) -> torch.Tensor:
    """(N, 4k, 2h, 2w) -> (N, 16k, h, w), the inverse of :func:`shuffle_half`: a map at twice the resolution, folded
    into the channels of the x4 shuffle's layout (``pixel_shuffle(.., 4)`` of the result equals ``pixel_shuffle(x,
    2)``)."""
    n, c, h2, w2 = x.shape
    x = x.view(n, c // 4, 2, 2, h2 // 2, 2, w2 // 2, 2)  # (k, a', b', h, a, w, b)
    return x.permute(0, 1, 5, 2, 7, 3, 4, 6).reshape(n, c * 4, h2 // 2, w2 // 2)
