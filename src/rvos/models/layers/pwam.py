"""Pixel-word attention (LAVT's PWAM, as DsHmp fuses words into each Swin stage).

Every pixel attends over the words (the query an instance-normalised 1x1 projection of the pixel, the keys and
values 1x1 projections of the raw word features, padded words zeroed and pushed to -1e4), the result is
instance-normalised, multiplied element-wise by a GELU projection of the pixel, and projected again (1x1 conv,
GELU). :class:`rvos.models.backbones.mm_swin.MMStage` adds that to the stage's features through a tanh gate
initialised at zero. Parameter names follow the official modules (1x1 convolutions stored as ``Conv1d``).
"""

from __future__ import annotations

import torch
from torch import nn


class PixelWordAttention(nn.Module):
    """``SpatialImageLanguageAttention``: pixels (B, N, Cv) read words (B, L, Cl) -> (B, N, value_dim)."""

    def __init__(self, v_dim: int, l_dim: int, key_dim: int, value_dim: int, out_dim: int | None = None,
                 heads: int = 1):
        super().__init__()
        out_dim = value_dim if out_dim is None else out_dim
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        self.f_key = nn.Sequential(nn.Conv1d(l_dim, key_dim, 1))
        self.f_query = nn.Sequential(nn.Conv1d(v_dim, key_dim, 1), nn.InstanceNorm1d(key_dim))
        self.f_value = nn.Sequential(nn.Conv1d(l_dim, value_dim, 1))
        self.W = nn.Sequential(nn.Conv1d(value_dim, out_dim, 1), nn.InstanceNorm1d(out_dim))

    def forward(self, x: torch.Tensor, words: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        keep = torch.ones(words.shape[:2], device=x.device, dtype=x.dtype) if padding is None else (~padding).to(x.dtype)
        keep = keep[:, None]  # (B, 1, L)
        words = words.transpose(1, 2)  # (B, Cl, L)
        h = self.heads
        query = self.f_query(x.transpose(1, 2)).transpose(1, 2).reshape(b, n, h, -1).transpose(1, 2)  # (B, h, N, d)
        key = (self.f_key(words) * keep).reshape(b, h, self.key_dim // h, -1)  # (B, h, d, L)
        value = (self.f_value(words) * keep).reshape(b, h, self.value_dim // h, -1)  # (B, h, dv, L)
        sim = (query @ key) * self.key_dim ** -0.5 + (1e4 * keep[:, None] - 1e4)
        out = sim.softmax(-1) @ value.transpose(2, 3)  # (B, h, N, dv)
        out = out.transpose(1, 2).reshape(b, n, self.value_dim)
        return self.W(out.transpose(1, 2)).transpose(1, 2)


class PWAM(nn.Module):
    """(B, N, C) pixels, (B, L, Cl) words -> (B, N, C): ``project_mm(vis_project(x) * attention(x, words))``."""

    def __init__(self, dim: int, l_dim: int, heads: int = 1, dropout: float = 0.0):
        super().__init__()
        self.vis_project = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.GELU(), nn.Dropout(dropout))
        self.image_lang_att = PixelWordAttention(dim, l_dim, dim, dim, dim, heads)
        self.project_mm = nn.Sequential(nn.Conv1d(dim, dim, 1), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, words: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        vis = self.vis_project(x.transpose(1, 2))
        lang = self.image_lang_att(x, words, padding).transpose(1, 2)
        return self.project_mm(vis * lang).transpose(1, 2)
