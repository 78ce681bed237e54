"""Video query decoder: video queries refined over the whole clip's frame queries.

Each layer: text cross-attention, cross-attention to the (re-ordered) frame queries of every frame, self-attention,
FFN. The frame queries carry a slot embedding and an embedding of their frame's time (normalised to [0, 1] over
the clip), so the decoder can read the order of events: which way an object moves, when it stops.

Masks are video queries dotted with each frame's mask features. With ``frame_readout`` each video query first
reads, in every frame, the frame queries of that frame (one attention over the frame's slots) and adds what it
reads before the mask head: look-alikes that only motion tells apart have the same appearance features, and one
vector per video cannot say which of two identical objects is the target at every frame's position; the
per-frame reading can (DVIS's referring tracker reads frame queries the same way).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rvos.models.layers.attention import MLP
from rvos.models.layers.score_head import ScoreHead
from rvos.models.modules.query_stack import QueryLayerStack


def fourier_time(t_len: int, bands: int, device) -> torch.Tensor:
    """(T, 2 * bands) sin / cos of 2^k * pi * u for the normalised frame time u in [0, 1]."""
    u = torch.arange(t_len, device=device, dtype=torch.float32) / max(t_len - 1, 1)
    freqs = (2.0 ** torch.arange(bands, device=device, dtype=torch.float32)) * math.pi
    angles = u[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FrameReadout(nn.Module):
    """Each video query attends over one frame's frame queries; (B, Q, C) x (B, T, Q, C) -> (B, T, Q, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, video_queries: torch.Tensor, frame_queries: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("bqc,btkc->btqk", self.q(video_queries), self.k(frame_queries))
        weights = (logits / math.sqrt(video_queries.shape[-1])).softmax(-1)
        read = torch.einsum("btqk,btkc->btqc", weights, frame_queries)
        return self.norm(video_queries[:, None] + self.out(read))


class VideoQueryDecoder(QueryLayerStack):
    def __init__(self, dim: int = 256, num_queries: int = 20, layers: int = 6, heads: int = 8, ffn: int = 2048,
                 mask_dim: int = 256, dropout: float = 0.0, time_bands: int = 8, frame_readout: bool = True,
                 text_score: bool = True):
        super().__init__(dim, layers, heads, ffn, dropout, memories=("text", "frame"))
        self.num_queries = num_queries
        self.input_proj = nn.Linear(dim, dim)
        self.slot_pos = nn.Embedding(num_queries, dim)
        self.time_pos = nn.Linear(2 * time_bands, dim)
        self.time_bands = time_bands
        self.query_pos = nn.Embedding(num_queries, dim)
        self.norm = nn.LayerNorm(dim)
        self.score_head = ScoreHead(dim, text_score)
        self.mask_head = MLP(dim, dim, mask_dim, 3)
        self.readout = FrameReadout(dim) if frame_readout else None

    def forward(self, init: torch.Tensor, frame_queries: torch.Tensor, words: torch.Tensor,
                word_padding: torch.Tensor, sentence: torch.Tensor):
        """init (B, Q, C) initial video queries; frame_queries (B, T, Q, C) re-ordered; words (B, L, C);
        sentence (B, C).

        Returns per-layer scores (B, Q) and mask embeddings (B, T, Q, mask_dim), and the last layer's
        normalised video queries (B, Q, C)."""
        b, t_len, q, c = frame_queries.shape
        memory = self.input_proj(frame_queries)
        time = self.time_pos(fourier_time(t_len, self.time_bands, memory.device))  # (T, C)
        pos = self.slot_pos.weight[None, None] + time[None, :, None]  # (1, T, Q, C)
        memory, pos = memory.flatten(1, 2), pos.expand(b, -1, -1, -1).flatten(1, 2)
        query_pos = self.query_pos.weight[None].expand(b, -1, -1)
        queries = init
        all_scores, all_embeds = [], []
        for i in range(self.num_layers):
            queries = self.layer(i, queries, query_pos, text={"memory": words, "key_padding_mask": word_padding},
                                 frame={"memory": memory, "pos": pos})
            out = self.norm(queries)
            all_scores.append(self.score_head(out, sentence))
            if self.readout is not None:
                per_frame = self.readout(out, frame_queries)
            else:
                per_frame = out[:, None].expand(-1, t_len, -1, -1)
            all_embeds.append(self.mask_head(per_frame))
        return all_scores, all_embeds, out
