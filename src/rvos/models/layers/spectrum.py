"""SgMg's spectrum modulation (the official ``LFMResizeAdaptive``): a feature map reshaped in frequency space.

    x ─3x3 conv (no padding)─ global mean ─Linear─ReLU─Linear─sigmoid─> coef (one per sample, in [0, 1])
    X = fft2(x)                                  (float32, no fftshift)
    X *= 1 - coef * G                            G: a Gaussian (sigma) centred at (h // 2, w // 2) of the spectrum
    [Re X, Im X] ─1x1 conv─ReLU─1x1 conv─> [Re Y, Im Y]
    out = x + Re(ifft2(Y))

Without fftshift the spectrum's centre (h // 2, w // 2) holds the highest frequencies, so ``1 - coef * G``
attenuates high frequencies by a learned amount: a low-pass filter. The Gaussian is built at the first level of a
pyramid and handed from one call to the next, each resizing the previous one bilinearly (``gauss``), as the
official chain of calls does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def centred_gaussian(height: int, width: int, sigma: float, device=None) -> torch.Tensor:
    """(1, 1, H, W): ``exp(-((y - H // 2)^2 + (x - W // 2)^2) / (2 sigma^2))``."""
    y = torch.arange(height, device=device, dtype=torch.float32)[:, None]
    x = torch.arange(width, device=device, dtype=torch.float32)[None, :]
    return torch.exp(-((y - height // 2) ** 2 + (x - width // 2) ** 2) / (2 * sigma**2))[None, None]


class SpectrumModulation(nn.Module):
    def __init__(self, channels: int, sigma: float = 7.0):
        super().__init__()
        self.sigma = sigma
        self.laplace = nn.Conv2d(channels, channels, 3, padding=0)
        self.fc = nn.Sequential(nn.Linear(channels, channels, bias=False), nn.ReLU(),
                                nn.Linear(channels, 1, bias=False), nn.Sigmoid())
        self.conv1 = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.conv2 = nn.Conv2d(2 * channels, 2 * channels, 1)

    def coefficient(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1, 1, 1): how much of the Gaussian each sample's spectrum loses. A map smaller than
        the 3x3 convolution (where the official code fails: small frames at stride 64) is first extended by
        replicating its last row / column."""
        h, w = x.shape[-2:]
        if h < 3 or w < 3:
            x = F.pad(x, (0, max(0, 3 - w), 0, max(0, 3 - h)), mode="replicate")
        return self.fc(self.laplace(x).mean((2, 3)))[:, :, None, None]

    def forward(self, x: torch.Tensor, gauss: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, H, W); gauss: the previous call's Gaussian (resized to this map), or None to build one ->
        (the modulated map in float32, the Gaussian used)."""
        x = x.float()
        h, w = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            if gauss is None:
                gauss = centred_gaussian(h, w, self.sigma, x.device)
            else:
                gauss = F.interpolate(gauss, size=(h, w), mode="bilinear", align_corners=False)
            spectrum = torch.fft.fft2(x) * (1 - self.coefficient(x) * gauss)
            y = self.conv2(F.relu(self.conv1(torch.cat([spectrum.real, spectrum.imag], 1))))
            real, imag = y.chunk(2, dim=1)
            return x + torch.fft.ifft2(torch.complex(real, imag), s=(h, w)).real, gauss
