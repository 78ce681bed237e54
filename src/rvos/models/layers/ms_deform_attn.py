"""Multi-scale deformable attention (Deformable DETR), in pure PyTorch.

Each query attends to ``n_points`` sampling locations per head and per feature level, placed around its
reference point by learned offsets, and takes their attention-weighted sum. The sampling is bilinear
``grid_sample``, so it runs on CPU and GPU with no compiled op; it computes what the CUDA kernel of the
official implementation computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn(value: torch.Tensor, spatial_shapes: list[tuple[int, int]], sampling_locations: torch.Tensor,
                   attention_weights: torch.Tensor) -> torch.Tensor:
    """value (N, S, M, D) with S = sum of H_l * W_l over levels (concatenated in ``spatial_shapes`` order);
    sampling_locations (N, Lq, M, L, P, 2) as (x, y) in [0, 1]; attention_weights (N, Lq, M, L, P), softmaxed
    over levels and points. Returns (N, Lq, M * D), channels head-major."""
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] coordinates, align_corners=False
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels, n_points)
    out = None
    for level, (h, w) in enumerate(spatial_shapes):
        v = values[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N*M, Lq, P, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N*M, D, Lq, P)
        part = (sampled * weights[:, :, :, level]).sum(-1)  # (N*M, D, Lq)
        out = part if out is None else out + part
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Deformable attention over ``n_levels`` feature maps, ``n_heads`` heads, ``n_points`` points each."""

    def __init__(self, d_model: int = 256, n_levels: int = 3, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # offsets start on a ring of directions, one per head, the i-th point i+1 pixels out
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                spatial_shapes: list[tuple[int, int]], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query (N, Lq, C); reference_points (N, Lq, L, 2) as (x, y) in [0, 1], or (N, Lq, L, 4) as boxes
        (cx, cy, w, h) around which the points spread (Deformable DETR's box refinement); value (N, S, C);
        padding_mask (N, S) True where ``value`` is padding (those values read as 0)."""
        n, lq, _ = query.shape
        v = self.value_proj(value)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.view(n, value.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        ref = reference_points[:, :, None, :, None]
        if reference_points.shape[-1] == 4:  # offsets in halves of the box's size, per point
            locations = ref[..., :2] + offsets / self.n_points * ref[..., 2:] * 0.5
        else:  # offsets are in pixels of each level: normalise by the level's (W, H)
            normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
            locations = ref + offsets / normalizer[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(v, spatial_shapes, locations, weights))
