"""MUTR's multi-object temporal interaction (MTI): the frame queries of a clip become video queries.

    frame queries (B, T, fQ, C) ─windowed self-attention encoder (VITA's)─> (B, T, fQ, C)
    video queries (B, Q, C), from learned ``query_feat`` (or given: instance-initialised queries)
        each decoder layer: cross-attention to the T * fQ frame queries (+ a learned position per frame query
        slot), self-attention, FFN; every sub-layer post-norm, dropout 0.2
    ─decoder_norm─> video queries (B, Q, C) of the last layer

The official module returns only the last decoder layer (it is not supervised per layer).
"""

from __future__ import annotations

import torch
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer
from rvos.models.modules.windowed_encoder import WindowedQueryEncoder


class TemporalInteraction(nn.Module):
    def __init__(self, dim: int = 256, frame_queries: int = 5, queries: int = 5, heads: int = 8, ffn: int = 2048,
                 enc_layers: int = 3, dec_layers: int = 3, window: int = 4, dropout: float = 0.2):
        super().__init__()
        self.encoder = WindowedQueryEncoder(dim, enc_layers, heads, ffn, window, dropout)
        self.fq_pos = nn.Embedding(frame_queries, dim)
        self.query_embed = nn.Embedding(queries, dim)
        self.query_feat = nn.Embedding(queries, dim)
        self.cross_attn = nn.ModuleList(AttentionLayer(dim, heads, dropout) for _ in range(dec_layers))
        self.self_attn = nn.ModuleList(AttentionLayer(dim, heads, dropout) for _ in range(dec_layers))
        self.ffn = nn.ModuleList(FFNLayer(dim, ffn, dropout) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(dim)

    def forward(self, frame_queries: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """frame_queries (B, T, fQ, C); init (B, Q, C) the video queries' start (default: the learned ones) ->
        the video queries (B, Q, C)."""
        b, t_len, fq, c = frame_queries.shape
        memory = self.encoder(frame_queries).flatten(1, 2)  # (B, T*fQ, C), token t * fQ + q
        pos = self.fq_pos.weight.repeat(t_len, 1)[None]
        query_pos = self.query_embed.weight[None].expand(b, -1, -1)
        x = self.query_feat.weight[None].expand(b, -1, -1) if init is None else init
        for cross, self_attn, ffn in zip(self.cross_attn, self.self_attn, self.ffn):
            x = cross(x, memory, query_pos=query_pos, pos=pos)
            x = self_attn(x, query_pos=query_pos)
            x = ffn(x)
        return self.decoder_norm(x)
