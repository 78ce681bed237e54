"""Instance-mask query initialisation (the PVUW 2024 MeViS 2nd-place report, section 2.3): MUTR's video queries
start from what a video instance segmentation model (DVIS in the report) found in the clip, instead of from learned
vectors alone.

    instance masks (K, T, H, W), best first ─each mask as an image through the visual backbone─> per level
        (K*T, C_l, h_l, w_l) ─Linear per level, spatial mean─> per instance T x levels tokens (K, T*L, C)
    queries (Q, C), from MTI's learned start: for each instance in turn,
        cross-attention to its tokens ─> self-attention ─> FFN (post-norm, MTI's query positions)
    ─> MTI decoder's initial video queries

The report feeds the masks (not the masked frames) to the visual encoder and pools after a linear projection;
a linear projection commutes with the spatial mean, so the mean is taken first. The instances are read one after
another: their order (by score) matters. Without instances the learned start is unchanged, which is plain MUTR.
"""

from __future__ import annotations

import torch
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer


class InstanceQueryInit(nn.Module):
    def __init__(self, channels: list[int], dim: int = 256, heads: int = 8, ffn: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(c, dim) for c in channels)
        self.cross_attn = AttentionLayer(dim, heads, dropout)
        self.self_attn = AttentionLayer(dim, heads, dropout)
        self.ffn = FFNLayer(dim, ffn, dropout)

    def tokens(self, maps: list[torch.Tensor], instances: int) -> torch.Tensor:
        """The backbone's maps of the instance masks, per level (K*T, C_l, h, w), instance-major -> (K, T*L, C)."""
        pooled = [proj(m.mean((2, 3))) for proj, m in zip(self.proj, maps)]  # each (K*T, C)
        return torch.stack(pooled, 1).reshape(instances, -1, pooled[0].shape[-1])

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """queries, query_pos (Q, C); tokens (K, S, C) of the instances in order -> (Q, C)."""
        x, pos = queries[None], query_pos[None]
        for instance in tokens:
            x = self.cross_attn(x, instance[None], query_pos=pos)
            x = self.self_attn(x, query_pos=pos)
            x = self.ffn(x)
        return x[0]
