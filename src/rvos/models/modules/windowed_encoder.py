"""Self-attention over a clip's frame queries in temporal windows (VITA's frame-query encoder), shared by DsHmp's
Hierarchical Motion Perception and MUTR's multi-object temporal interaction.

The frame queries (B, T, Q, C) are cut into windows of ``window`` frames (the clip padded with zero frames to a
multiple of it); each layer is self-attention over a window's W x Q queries (padded frames masked as keys), then an
FFN. At inference, odd layers use windows shifted by half a window (Swin-style: the frames rolled, the attention
across the wrap-around and to padded frames blocked by an additive -1000), as the official code does; in training
every layer uses plain windows. A subclass can put a step between the attention and the FFN of each layer.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer


class WindowedQueryEncoder(nn.Module):
    def __init__(self, dim: int = 256, layers: int = 6, heads: int = 8, ffn: int = 2048, window: int = 8,
                 dropout: float = 0.0):
        super().__init__()
        self.heads, self.window = heads, window
        self.self_attn = nn.ModuleList(AttentionLayer(dim, heads, dropout) for _ in range(layers))
        self.ffn = nn.ModuleList(FFNLayer(dim, ffn, dropout) for _ in range(layers))

    def forward(self, queries: torch.Tensor, shifted: bool | None = None) -> torch.Tensor:
        """queries (B, T, Q, C) -> (B, T, Q, C). ``shifted``: odd layers on shifted windows (default: at inference
        only, as the official code)."""
        return self.encode(queries, shifted)

    def encode(self, queries: torch.Tensor, shifted: bool | None = None,
               between: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The layers; ``between(i, windows (B*Nw, W, Q, C))`` runs between layer i's attention and its FFN."""
        b, t_len, q_len, c = queries.shape
        shifted = (not self.training) if shifted is None else shifted
        w = self.window
        padded_len = math.ceil(t_len / w) * w
        x = F.pad(queries, (0, 0, 0, 0, 0, padded_len - t_len))
        pad = torch.zeros(b, padded_len, dtype=torch.bool, device=queries.device)
        pad[:, t_len:] = True
        shift_mask = self._shift_mask(pad, q_len) if shifted and len(self.ffn) > 1 else None  # the same every layer
        half = math.ceil(w / 2)
        for i in range(len(self.ffn)):
            if shifted and i % 2 == 1:
                x = torch.roll(x, half, dims=1)
                x = self._layer(i, x, between, attn_mask=shift_mask)
                x = torch.roll(x, -half, dims=1)
            else:
                x = self._layer(i, x, between, key_padding=pad)
        return x[:, :t_len]

    def _layer(self, i: int, x: torch.Tensor, between, key_padding: torch.Tensor | None = None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t_len, q_len, c = x.shape
        nw = t_len // self.window
        win = x.reshape(b * nw, self.window, q_len, c)
        tokens = win.flatten(1, 2)  # (B*Nw, W*Q, C), token w * Q + q
        if key_padding is not None:
            key_padding = key_padding.view(b * nw, self.window, 1).expand(-1, -1, q_len).flatten(1)
        tokens = self.self_attn[i](tokens, key_padding_mask=key_padding, attn_mask=attn_mask)
        if between is not None:
            tokens = between(i, tokens.view_as(win)).flatten(1, 2)
        tokens = self.ffn[i](tokens)
        return tokens.view(b, t_len, q_len, c)

    def _shift_mask(self, pad: torch.Tensor, q_len: int) -> torch.Tensor:
        """The official additive mask of shifted windows (B*Nw*heads, W*Q, W*Q): in the first and the last window
        a padded frame neither attends nor is attended to, and in the first window (which holds the clip's last
        frames before its first, rolled round) the two halves do not see each other; -1000 where blocked."""
        b, t_len = pad.shape
        w, nw, half = self.window, t_len // self.window, math.ceil(self.window / 2)
        rolled = torch.roll(pad, half, dims=1).view(b, nw, w)
        mask = rolled[..., None].expand(-1, -1, -1, w).clone()  # (B, Nw, W query frame, W key frame)
        for edge in (0, -1):
            mask[:, edge] = mask[:, edge] | mask[:, edge].transpose(-2, -1)
        mask[:, 0, :half, half:] = True
        mask[:, 0, half:, :half] = True
        mask = mask.view(b * nw, 1, w, 1, w, 1).expand(-1, self.heads, -1, q_len, -1, q_len)
        return mask.reshape(b * nw * self.heads, w * q_len, w * q_len).float() * -1000
