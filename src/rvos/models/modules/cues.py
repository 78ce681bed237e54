"""DsHmp's text side: the text encoder's outputs resized to the model width, and the static and motion cue sets.

``FeatureResizer`` (Linear, LayerNorm with eps 1e-12, dropout) maps the word features and the pooled sentence
feature to the model width. A sentence's motion cues are its resized word features at the motion positions of
its cue maps (:mod:`rvos.text.decouple`) followed by the resized sentence feature; its static cues likewise. A
sentence without motion words has the sentence feature alone as its motion cues. Cue sets of a batch are padded
to the longest (padding flagged True).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureResizer(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.layer_norm = nn.LayerNorm(out_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.layer_norm(self.fc(x)))


def cue_sets(words: torch.Tensor, sentence: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """words (B, L, C), sentence (B, C), maps (B, >= L) bool -> cues (B, M, C) and their padding (B, M): per
    sentence the words where ``maps`` holds, then the sentence feature."""
    maps = maps[:, : words.shape[1]]
    counts = maps.sum(1) + 1
    cues = words.new_zeros(words.shape[0], int(counts.max()), words.shape[-1])
    padding = torch.ones(cues.shape[:2], dtype=torch.bool, device=words.device)
    for b in range(words.shape[0]):
        chosen = torch.cat([words[b][maps[b]], sentence[b : b + 1]])
        cues[b, : len(chosen)] = chosen
        padding[b, : len(chosen)] = False
    return cues, padding
