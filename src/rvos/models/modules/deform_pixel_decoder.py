"""Mask2Former's multi-scale deformable-attention pixel decoder (``MSDeformAttnPixelDecoder``), in pure PyTorch.

The coarsest ``levels`` backbone maps (strides 8, 16, 32 by default) are projected (1x1 conv + GroupNorm), given
sine positions plus a learned level embedding, and encoded together by ``layers`` deformable self-attention
layers (post-norm, FFN). The finer maps are then merged in as an FPN (lateral 1x1 conv + GroupNorm, the upsampled
coarser map added, 3x3 conv + GroupNorm + ReLU), and the finest result is projected to the mask features.

Input: backbone maps from fine to coarse (N, C_i, H_i, W_i). Output: the mask features (N, mask_dim, H/4, W/4)
and the encoded maps from coarse to fine (the three a masked-attention decoder reads); :meth:`forward_features` also
gives the finest FPN map before that projection (VITA-style clip heads project it their own way). There is no
padding mask: padded pixels are encoded like the others, as in Mask2Former.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.ms_deform_attn import MSDeformAttn
from rvos.models.layers.position_encoding import sine_2d


class DeformEncoderLayer(nn.Module):
    """``norm1(x + deform_attn(x + pos))``, then ``norm2(x + linear2(relu(linear1(x))))``."""

    def __init__(self, dim: int, ffn: int, levels: int, heads: int, points: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = MSDeformAttn(dim, levels, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                shapes: list[tuple[int, int]], padding: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.self_attn(x + pos, reference_points, x, shapes, padding)))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(x))))))


def conv_gn(cin: int, cout: int, kernel: int, groups: int, relu: bool = False) -> nn.Sequential:
    """A bias-free convolution, GroupNorm and optionally ReLU (detectron2's ``Conv2d(norm="GN")``)."""
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's c2_xavier_fill
    layers = [conv, nn.GroupNorm(groups, cout)] + ([nn.ReLU()] if relu else [])
    return nn.Sequential(*layers)


def input_projection(conv: nn.Conv2d, groups: int) -> nn.Sequential:
    """A projection of a backbone map as Deformable DETR's input projections: ``conv`` (Xavier-uniform weights, zero
    bias) and GroupNorm."""
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.GroupNorm(groups, conv.out_channels))


def reference_points(shapes: list[tuple[int, int]], device) -> torch.Tensor:
    """Pixel centres of every level normalised to [0, 1] as (x, y), the same on every level: (S, levels, 2)."""
    refs = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device) / h,
                              torch.linspace(0.5, w - 0.5, w, device=device) / w, indexing="ij")
        refs.append(torch.stack([x.reshape(-1), y.reshape(-1)], -1))
    return torch.cat(refs)[:, None, :].expand(-1, len(shapes), -1)


def flatten_levels(projections: nn.ModuleList, maps: list[torch.Tensor], level_embed: torch.Tensor):
    """Maps from coarse to fine, each through its projection -> the tokens of every level (N, S, C), their sine
    positions plus level embeddings (N, S, C), the levels' (h, w) and the reference points (N, S, levels, 2)."""
    srcs, poss, shapes = [], [], []
    for level, (proj, feat) in enumerate(zip(projections, maps)):
        x = proj(feat)
        n, c, h, w = x.shape
        shapes.append((h, w))
        srcs.append(x.flatten(2).transpose(1, 2))
        pos = sine_2d(h, w, c // 2, device=x.device, dtype=x.dtype).flatten(1).transpose(0, 1)
        poss.append((pos + level_embed[level])[None].expand(n, -1, -1))
    src, pos = torch.cat(srcs, 1), torch.cat(poss, 1)
    return src, pos, shapes, reference_points(shapes, src.device)[None].expand(src.shape[0], -1, -1, -1)


def unflatten_levels(src: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The tokens of every level (N, S, C) -> maps (N, C, h, w), in the order of ``shapes``."""
    return [m.transpose(1, 2).reshape(src.shape[0], src.shape[-1], h, w)
            for m, (h, w) in zip(src.split([h * w for h, w in shapes], dim=1), shapes)]


class MSDeformPixelDecoder(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256, mask_dim: int = 256, layers: int = 6, heads: int = 8,
                 points: int = 4, ffn: int = 1024, dropout: float = 0.0, norm_groups: int = 32, levels: int = 3):
        super().__init__()
        if len(in_channels) <= levels:
            raise ValueError(f"{len(in_channels)} input maps: need more than the {levels} encoded ones")
        self.levels = levels
        self.input_proj = nn.ModuleList()  # from coarse to fine
        for cin in reversed(in_channels[-levels:]):
            self.input_proj.append(input_projection(nn.Conv2d(cin, dim, 1), norm_groups))
        self.level_embed = nn.Parameter(torch.empty(levels, dim).normal_())
        self.layers = nn.ModuleList(DeformEncoderLayer(dim, ffn, levels, heads, points, dropout) for _ in range(layers))
        fpn = in_channels[:-levels]  # from fine to coarse
        self.lateral = nn.ModuleList(conv_gn(cin, dim, 1, norm_groups) for cin in fpn)
        self.output = nn.ModuleList(conv_gn(dim, dim, 3, norm_groups, relu=True) for _ in fpn)
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """features from fine to coarse -> (mask features, the encoded maps from coarse to fine)."""
        mask_features, maps, _ = self.forward_features(features)
        return mask_features, maps

    def forward_features(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """-> (mask features, the encoded maps from coarse to fine, the finest FPN map (N, dim, H/4, W/4))."""
        coarse_to_fine = [f.float() for f in reversed(features[-self.levels:])]
        src, pos, shapes, points = flatten_levels(self.input_proj, coarse_to_fine, self.level_embed)
        for layer in self.layers:
            src = layer(src, pos, points, shapes)
        maps = unflatten_levels(src, shapes)
        out = maps[-1]
        for lateral, output, feat in zip(reversed(self.lateral), reversed(self.output),
                                         reversed(features[:-self.levels])):
            fine = lateral(feat.float())
            out = output(fine + F.interpolate(out, size=fine.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(out), maps, out
