"""Referring score heads: how much a query's object is the one the sentence refers to."""

from __future__ import annotations

import math

import torch
from torch import nn


class ScoreHead(nn.Module):
    """``text_conditioned``: a scaled dot product of projections of the query and of the sentence (plus a bias),
    so a query scores high when its object matches what the sentence says; otherwise a Linear layer on the query
    alone (Mask2Former's class head with one class)."""

    def __init__(self, dim: int, text_conditioned: bool = True):
        super().__init__()
        self.text_conditioned = text_conditioned
        if text_conditioned:
            self.query_proj = nn.Linear(dim, dim)
            self.text_proj = nn.Linear(dim, dim)
            self.bias = nn.Parameter(torch.zeros(1))
        else:
            self.linear = nn.Linear(dim, 1)

    def forward(self, queries: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """queries (N, Q, C), sentence (N, C) -> logits (N, Q)."""
        if not self.text_conditioned:
            return self.linear(queries).squeeze(-1)
        q = self.query_proj(queries)
        t = self.text_proj(sentence)[:, None]
        return (q * t).sum(-1) / math.sqrt(q.shape[-1]) + self.bias
