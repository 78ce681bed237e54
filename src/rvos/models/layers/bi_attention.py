"""Bi-directional image-text attention (GLIP / Grounding DINO's fusion block, as DsHmp uses it in its decoders).

One attention matrix between visual tokens and words serves both directions: the visual tokens read the words
(softmax over words) and the words read the visual tokens (softmax over visual tokens, from the transposed
matrix). The block normalises both inputs first (pre-LayerNorm) and adds each update to the *normalised* input,
scaled by a per-channel layer scale (initialised at 1e-4) and through drop-path: ``v' = LN(v) + gamma_v * dv``.
The attention logits are shifted by their maximum and clamped to +-50000 before the softmaxes, as the official
code does (a no-op in float32 except at extreme values, kept so outputs match exactly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

_CLAMP = 50000.0


class BiAttention(nn.Module):
    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by heads {heads}")
        self.heads, self.head_dim, self.dropout = heads, embed_dim // heads, dropout
        self.scale = self.head_dim ** -0.5
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        for layer in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj, self.out_v_proj,
                      self.out_l_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, E) -> (B * heads, N, head_dim)."""
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2).reshape(b * self.heads, n, self.head_dim)

    def _merge(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """(B * heads, N, head_dim) -> (B, N, E)."""
        n = x.shape[1]
        return x.view(b, self.heads, n, self.head_dim).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)

    def forward(self, v: torch.Tensor, l: torch.Tensor, v_padding: torch.Tensor | None = None,
                l_padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, Nv, Dv), l (B, Nl, Dl); paddings (B, Nv), (B, Nl) True where padded -> updates (dv, dl)."""
        b = v.shape[0]
        logits = self._heads(self.v_proj(v) * self.scale) @ self._heads(self.l_proj(l)).transpose(1, 2)
        logits = (logits - logits.max()).clamp(-_CLAMP, _CLAMP)  # (B*h, Nv, Nl)
        logits_l = logits.transpose(1, 2)
        logits_l = (logits_l - logits_l.max(dim=-1, keepdim=True).values).clamp(-_CLAMP, _CLAMP)  # (B*h, Nl, Nv)
        if v_padding is not None:
            logits_l = logits_l.masked_fill(v_padding.repeat_interleave(self.heads, 0)[:, None], float("-inf"))
        if l_padding is not None:
            logits = logits.masked_fill(l_padding.repeat_interleave(self.heads, 0)[:, None], float("-inf"))
        probs_v = F.dropout(logits.softmax(-1), self.dropout, self.training)
        probs_l = F.dropout(logits_l.softmax(-1), self.dropout, self.training)
        dv = self._merge(probs_v @ self._heads(self.values_l_proj(l)), b)
        dl = self._merge(probs_l @ self._heads(self.values_v_proj(v)), b)
        return self.out_v_proj(dv), self.out_l_proj(dl)


class BiAttentionBlock(nn.Module):
    """``LN(v) + drop_path(gamma_v * dv)``, ``LN(l) + drop_path(gamma_l * dl)``; batch-first."""

    def __init__(self, v_dim: int, l_dim: int, embed_dim: int, heads: int, dropout: float = 0.1,
                 drop_path: float = 0.0, init_scale: float = 1e-4):
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiAttention(v_dim, l_dim, embed_dim, heads, dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_v = nn.Parameter(torch.full((v_dim,), init_scale))
        self.gamma_l = nn.Parameter(torch.full((l_dim,), init_scale))

    def forward(self, v: torch.Tensor, l: torch.Tensor, v_padding: torch.Tensor | None = None,
                l_padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v, l = self.layer_norm_v(v), self.layer_norm_l(l)
        dv, dl = self.attn(v, l, v_padding, l_padding)
        return v + self.drop_path(self.gamma_v * dv), l + self.drop_path(self.gamma_l * dl)
