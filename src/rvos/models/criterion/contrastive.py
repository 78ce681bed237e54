"""Contrastive learning of referred-object embeddings against a memory bank (DsHmp, CVPR 2024).

The bank holds one embedding per training expression. A clip's anchor (the mean embedding of the clip queries
matched to its targets) first updates its own expression's entry (``0.1 * old + 0.9 * anchor``, detached), then
is contrasted with the entries of its **positives** (every expression of the same video with the same targets,
itself included) against ``samples - len(positives)`` **negatives**: the video's other expressions (distractors)
first, then expressions drawn at random from the rest of the bank.

The loss is the official one: a multi-positive cross-entropy of the raw dot products (no temperature, though the
paper names one), counted twice, plus the mean squared difference between the cosine similarities and the 0/1
labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def multi_positive_loss(logits: torch.Tensor, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (N, K) raw dot products, cosine (N, K), labels (N, K) 0/1 -> scalar.

    Per row with a positive (in DsHmp every row has one: the anchor's own entry): ``-mean over positives of
    log(e^l_p / Z)``, where Z sums the negatives' e^l and the positives' e^l each divided by the number of
    positives; rows without positives are left out of the cross-entropy (the squared term counts every row)."""
    labels = labels.float()
    valid = labels.sum(1) > 0
    x, y = logits[valid], labels[valid]
    if x.numel():
        x = x - x.max(dim=1, keepdim=True).values.detach()
    per_positive = y / y.sum(1, keepdim=True)
    z = (x.exp() * per_positive + x.exp() * (1 - y)).sum(1, keepdim=True)
    ce = -((y * (x - z.log())).sum(1) / y.sum(1))
    return 2 * ce.mean() + ((cosine - labels).abs() ** 2).mean()


class MemoryBank(nn.Module):
    """One embedding per training expression (a buffer, saved with the model), initialised at random."""

    def __init__(self, entries: int, dim: int, samples: int = 100, keep: float = 0.1):
        super().__init__()
        self.register_buffer("features", torch.randn(entries, dim))
        self.samples, self.keep = samples, keep

    @torch.no_grad()
    def update(self, ids: torch.Tensor, embeds: torch.Tensor) -> None:
        """``features[id] = keep * features[id] + (1 - keep) * embed`` (ids (N,), embeds (N, C); an id < 0 is no
        update). Under ``torch.distributed`` the updates of every process are gathered first (each process passes
        the same N), so the banks stay identical, as the official all-gather keeps them."""
        embeds = embeds.detach().to(self.features.dtype)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids, embeds = _all_gather(ids), _all_gather(embeds)
        valid = ids >= 0
        ids, embeds = ids[valid], embeds[valid]
        self.features[ids] = self.keep * self.features[ids] + (1 - self.keep) * embeds

    def negatives(self, positives: Sequence[int], distractors: Sequence[int], rng: np.random.Generator) -> list[int]:
        """``samples - len(positives)`` entries: distractors first (cut to that many), the rest drawn without
        replacement from the entries that are neither positives nor distractors."""
        size = self.samples - len(positives)
        if len(distractors) >= size:
            return list(distractors[:size])
        excluded = np.zeros(self.features.shape[0], dtype=bool)
        excluded[list(positives)] = True
        excluded[list(distractors)] = True
        others = np.flatnonzero(~excluded)
        if len(others) < size - len(distractors):
            raise ValueError(f"the memory bank has {len(others)} entries to draw negatives from, "
                             f"{size - len(distractors)} needed: lower the number of contrastive samples")
        return rng.choice(others, size=size - len(distractors), replace=False).tolist() + list(distractors)

    def loss(self, anchor: torch.Tensor, entry: int, positives: Sequence[int], distractors: Sequence[int],
             rng: np.random.Generator) -> torch.Tensor:
        """Update ``entry`` with ``anchor`` (C,), then contrast the anchor with its positives and negatives."""
        self.update(torch.tensor([entry], device=anchor.device), anchor[None])
        return self.contrast(anchor, positives, distractors, rng)

    def contrast(self, anchor: torch.Tensor, positives: Sequence[int], distractors: Sequence[int],
                 rng: np.random.Generator) -> torch.Tensor:
        """The loss of ``anchor`` (C,) against its positives' entries and ``samples - len(positives)`` negatives
        (the bank is not changed; gradients reach the anchor only)."""
        pos = self.features[list(positives)]
        neg = self.features[self.negatives(positives, distractors, rng)]
        bank = torch.cat([pos, neg]).to(anchor.dtype)
        labels = torch.zeros(1, bank.shape[0], device=anchor.device)
        labels[0, : len(positives)] = 1
        logits = anchor[None] @ bank.T
        cosine = F.normalize(anchor[None], dim=1) @ F.normalize(bank, dim=1).T
        return multi_positive_loss(logits, cosine, labels)


def _all_gather(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
