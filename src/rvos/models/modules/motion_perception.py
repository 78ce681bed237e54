"""Hierarchical Motion Perception (DsHmp, CVPR 2024): frame queries of a clip made motion-aware.

The frame queries (B, T, Q, C) are cut into windows of ``window`` frames (the clip padded with zero frames to a
multiple of it). Each of the encoder's layers, in every window:

1. self-attention over the window's W x Q frame queries (padded frames masked as keys);
2. hierarchical cross-attention to the sentence's motion cues (:class:`HierarchicalCrossAttention`): the queries
   of the window are put in track order by Hungarian matching frame to frame, and each track's W tokens read the
   cues in ``stages`` stages, the tokens merged pairwise after each (W -> W/2 -> ... -> 1); the result is added
   to every token of its track through a tanh gate;
3. FFN.

At inference, odd layers use windows shifted by half a window (Swin-style, the frames rolled and the attention
across the wrap-around blocked), as the official code does; in training every layer uses plain windows.

Two details follow the official code rather than the paper's text, so its checkpoints give its outputs:

* the attention of a stage is normalised as in slot attention: a softmax over the track's tokens for each cue,
  then each token's weights divided by their sum (plus ``eps``); the tokens are merged by a plain mean of pairs
  (an odd count repeats the last token first), the attention weights unused;
* the track order: for frame t the official code takes ``current[indices]`` where ``indices[i]`` is the slot of
  frame t-1 matched to query i, which is the inverse of the matching permutation (the two agree when the matching
  is its own inverse), and restores the original order after the layer.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from rvos.models.modules.windowed_encoder import WindowedQueryEncoder


@torch.no_grad()
def track_order(queries: torch.Tensor) -> torch.Tensor:
    """queries (N, T, Q, C) -> index (N, T, Q) such that ``queries.gather(2, index)`` is the official track order
    (frame 0 unchanged; frame t matched on cosine distance to frame t-1 in track order)."""
    n, t_len, q, _ = queries.shape
    emb = queries.detach().float().cpu()
    emb = emb / (emb.norm(dim=-1, keepdim=True) + 1e-6)
    order = np.zeros((n, t_len, q), dtype=np.int64)
    for i in range(n):
        order[i, 0] = np.arange(q)
        previous = emb[i, 0]
        for t in range(1, t_len):
            cost = 1 - previous @ emb[i, t].T  # (previous slot, current query)
            cost = torch.nan_to_num(cost, nan=0.0).T.numpy()  # (current query, previous slot)
            order[i, t] = linear_sum_assignment(cost)[1]
            previous = emb[i, t][order[i, t]]
    return torch.from_numpy(order).to(queries.device)


def pairwise_mean(x: torch.Tensor) -> torch.Tensor:
    """(N, L, C) -> (N, ceil(L / 2), C): the mean of each pair of neighbours (an odd L repeats the last first)."""
    if x.shape[1] % 2:
        x = torch.cat([x, x[:, -1:]], dim=1)
    return (x[:, 0::2] + x[:, 1::2]) / 2


class HierarchicalCrossAttention(nn.Module):
    """Tracks of a window read the motion cues at ``stages`` temporal scales; a gated residual adds what they read."""

    def __init__(self, dim: int, stages: int = 3, eps: float = 1e-8):
        super().__init__()
        self.stages = stages
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        for s in range(1, stages + 1):  # the official names: out1, norm1, out2, ...
            setattr(self, f"out{s}", nn.Linear(dim, dim))
            setattr(self, f"norm{s}", nn.LayerNorm(dim))
        self.res_gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False),
                                      nn.Tanh())
        self.eps, self.scale = eps, dim ** -0.5

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cue_padding: torch.Tensor | None):
        """q (N, L, C); k, v (N, M, C) -> (N, L, C), normalised over the tokens for each cue, then per token."""
        attn = (q @ k.transpose(1, 2) * self.scale).softmax(dim=1)  # over the L tokens
        if cue_padding is not None:
            attn = attn.masked_fill(cue_padding[:, None], 0.0)
        attn = attn / (attn.sum(-1, keepdim=True) + self.eps)
        return attn @ v

    def forward(self, x: torch.Tensor, cues: torch.Tensor, cue_padding: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, W, Q, C) one window's frame queries; cues (N, M, C), cue_padding (N, M) True where padded."""
        n, w, q_len, c = x.shape
        if w > 2 ** self.stages:
            raise ValueError(f"a window of {w} frames does not merge to one token in {self.stages} stages")
        order = track_order(x)
        tracks = x.gather(2, order[..., None].expand_as(x))  # (N, W, Q, C) in track order
        tracks = tracks.permute(0, 2, 1, 3).reshape(n * q_len, w, c)  # (N*Q, W, C)
        k = self.to_k(cues).repeat_interleave(q_len, dim=0)
        v = self.to_v(cues).repeat_interleave(q_len, dim=0)
        padding = cue_padding.repeat_interleave(q_len, dim=0) if cue_padding is not None else None
        out = self.to_q(tracks)
        for s in range(1, self.stages + 1):
            out = getattr(self, f"norm{s}")(getattr(self, f"out{s}")(self.attend(out, k, v, padding)) + out)
            out = pairwise_mean(out)
        tracks = tracks + self.res_gate(out) * out  # (N*Q, 1, C) onto every token of the track
        tracks = tracks.view(n, q_len, w, c).permute(0, 2, 1, 3)
        return torch.empty_like(tracks).scatter_(2, order[..., None].expand_as(tracks), tracks)


class HierarchicalMotionPerception(WindowedQueryEncoder):
    """``layers`` blocks of windowed self-attention, hierarchical cross-attention to the motion cues and FFN."""

    def __init__(self, dim: int = 256, layers: int = 6, heads: int = 8, ffn: int = 2048, window: int = 8,
                 stages: int = 3):
        super().__init__(dim, layers, heads, ffn, window)
        self.cross = nn.ModuleList(HierarchicalCrossAttention(dim, stages) for _ in range(layers))

    def forward(self, queries: torch.Tensor, cues: torch.Tensor, cue_padding: torch.Tensor | None = None,
                shifted: bool | None = None) -> torch.Tensor:
        """queries (B, T, Q, C); cues (B, M, C) -> (B, T, Q, C). ``shifted``: odd layers on shifted windows
        (default: at inference only, as the official code)."""
        def between(i: int, win: torch.Tensor) -> torch.Tensor:
            nw = win.shape[0] // queries.shape[0]
            return self.cross[i](win, cues.repeat_interleave(nw, dim=0),
                                 None if cue_padding is None else cue_padding.repeat_interleave(nw, dim=0))

        return self.encode(queries, shifted, between)
