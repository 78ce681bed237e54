"""Transformer sub-layers as Mask2Former writes them: post-norm residual attention and FFN blocks, batch-first."""

from __future__ import annotations

import torch
from torch import nn


class AttentionLayer(nn.Module):
    """``LayerNorm(x + MultiheadAttention(q = x + query_pos, k = memory + pos, v = memory))``; with no
    ``memory`` it is self-attention over ``x``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, query_pos: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = x if query_pos is None else x + query_pos
        if memory is None:
            k, v = q, x
        else:
            k, v = (memory if pos is None else memory + pos), memory
        out = self.attn(q, k, v, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return self.norm(x + self.dropout(out))


class FFNLayer(nn.Module):
    """``LayerNorm(x + Linear(ReLU(Linear(x))))``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(x))))))


class MLP(nn.Module):
    """Linear layers with ReLU between them (Mask2Former's mask embedding head)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else torch.relu(layer(x))
        return x
