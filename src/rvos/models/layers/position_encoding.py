"""Sine position encodings: 2-D for feature maps (DETR / Mask2Former), 1-D for time."""

from __future__ import annotations

import math

import torch


def sine_2d(height: int, width: int, num_feats: int, device=None, dtype=torch.float32,
            temperature: float = 10000.0) -> torch.Tensor:
    """(2 * num_feats, H, W): normalised y then x positions, each as interleaved sin / cos of num_feats / 2
    frequencies (Mask2Former's ``PositionEmbeddingSine(normalize=True)``)."""
    eps, scale = 1e-6, 2 * math.pi
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)[None, :].expand(height, width)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    dim_t = torch.arange(num_feats, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    pos_x, pos_y = x[..., None] / dim_t, y[..., None] / dim_t
    pos_x = torch.stack([pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()], dim=-1).flatten(-2)
    pos_y = torch.stack([pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()], dim=-1).flatten(-2)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1).to(dtype)


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(..., dim) interleaved sin / cos encodings of real-valued positions (...)."""
    dim_t = torch.arange(dim, device=positions.device, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / dim)
    pos = positions.float()[..., None] / dim_t
    return torch.stack([pos[..., 0::2].sin(), pos[..., 1::2].cos()], dim=-1).flatten(-2)


def sine_2d_masked(padding: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """padding (N, H, W) True at padded pixels -> (N, 2 * num_feats, H, W): Deformable DETR's
    ``PositionEmbeddingSine(normalize=True)``: y then x, each the running count of valid pixels along its axis,
    minus 0.5, over the axis's valid length, times 2 pi, as interleaved sin / cos of ``num_feats`` / 2 frequencies."""
    eps, scale = 1e-6, 2 * math.pi
    valid = (~padding).float()
    y, x = valid.cumsum(1), valid.cumsum(2)
    y = (y - 0.5) / (y[:, -1:, :] + eps) * scale
    x = (x - 0.5) / (x[:, :, -1:] + eps) * scale
    return torch.cat([sine_1d(y, num_feats, temperature), sine_1d(x, num_feats, temperature)], -1).permute(0, 3, 1, 2)


def sine_text(padding: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """padding (B, L) True at padded tokens -> (B, L, dim): ReferFormer's ``PositionEmbeddingSine1D(normalize=True)``,
    the running count of real tokens over their number, times 2 pi."""
    count = (~padding).float().cumsum(1)
    return sine_1d(count / (count[:, -1:] + 1e-6) * 2 * math.pi, dim, temperature)
