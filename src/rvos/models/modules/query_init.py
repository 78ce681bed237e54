"""Video query initializer: frame queries re-ordered into a consistent instance order across frames, then
aggregated with learned frame weights.

Adjacent frames are linked as MinVIS does: frame t+1's queries are matched to frame t's (already re-ordered)
queries by the Hungarian algorithm on cosine distance, so that slot q holds the same instance in every frame. Queries
with a position (the frame decoder's proposals) add the distance between their positions to the cost.
A Linear layer scores each frame's query, a softmax over frames turns the scores into weights summing to one, and
the weighted sum of each slot over time is the initial video query.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn


@torch.no_grad()
def match_adjacent(queries: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """queries (B, T, Q, C) -> permutations (B, T, Q): ``queries[b, t, perm[b, t]]`` puts frame t's queries in
    the order of frame 0's instances. ``positions`` (B, T, Q, P): each query's position, whose Euclidean distance
    to the previous frame's adds to the cosine distance (so in the unit where a step of 1 costs as much as
    orthogonal queries)."""
    b, t_len, q, _ = queries.shape
    emb = F.normalize(queries.float(), dim=-1).cpu()
    pos = positions.float().cpu() if positions is not None else None
    perms = np.zeros((b, t_len, q), dtype=np.int64)
    for i in range(b):
        perms[i, 0] = np.arange(q)
        prev = emb[i, 0]
        for t in range(1, t_len):
            cost = 1 - prev @ emb[i, t].T  # (previous slot, current query)
            if pos is not None:
                cost = cost + torch.cdist(pos[i, t - 1][perms[i, t - 1]], pos[i, t])
            rows, cols = linear_sum_assignment(cost.numpy())
            perms[i, t, rows] = cols
            prev = emb[i, t][perms[i, t]]
    return torch.from_numpy(perms).to(queries.device)


def reorder(queries: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Apply :func:`match_adjacent`'s permutations to (B, T, Q, ...) tensors."""
    index = perms.view(*perms.shape, *([1] * (queries.dim() - 3))).expand_as(queries)
    return queries.gather(2, index)


class VideoQueryInitializer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.frame_weight = nn.Linear(dim, 1)

    def forward(self, frame_queries: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
        """frame_queries (B, T, Q, C), perms from :func:`match_adjacent` -> initial video queries (B, Q, C)."""
        ordered = reorder(frame_queries, perms)
        weights = self.frame_weight(ordered).softmax(dim=1)  # (B, T, Q, 1), sums to 1 over frames
        return (weights * ordered).sum(dim=1)
