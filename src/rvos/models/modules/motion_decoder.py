"""DsHmp's clip-level stage: Hierarchical Motion Perception over the frame queries, then the motion decoder.

    frame queries (N, T, fQ, C) ─Linear─> HMP (windows of frames, motion cues) ─> object tokens (T * fQ)
    clip queries (learned, + 0.1 * cross-attention to the motion cues) ─┐
    per layer: bi-attention (object tokens <-> words, both updated), cross-attention to the object tokens,
               cross-attention to the words, self-attention, FFN  ────┴─> class logits, mask embeddings,
                                                                          similarity and contrastive embeddings

N is clips times the frame-decoder layers fed in (the last 3 in training, the last one at inference in the
official code); the caller flattens them, layer-major as the official code does. Predictions are made after every
layer in training (deep supervision) and after the last one otherwise. The object tokens carry a learned position
per frame-query slot (the same in every frame); the clip queries a learned position.

Parameter names follow the official ``DsHmpHierarchical`` where they can (``query_feat``, ``fq_pos``,
``cross_motion``, ``fusion_layers``, ``class_embed``...); the attention stack is rvos's shared one.
"""

from __future__ import annotations

import torch
from torch import nn

from rvos.models.layers.attention import MLP, AttentionLayer
from rvos.models.layers.bi_attention import BiAttentionBlock
from rvos.models.modules.motion_perception import HierarchicalMotionPerception
from rvos.models.modules.query_stack import QueryLayerStack


class MotionDecoder(QueryLayerStack):
    def __init__(self, dim: int = 256, frame_queries: int = 20, queries: int = 10, heads: int = 8, ffn: int = 2048,
                 hmp_layers: int = 6, layers: int = 3, window: int = 8, num_classes: int = 1, mask_dim: int = 256,
                 conv_dim: int = 256, fusion_dropout: float = 0.1, fusion_drop_path: float = 0.1,
                 motion_dropout: float = 0.1):
        super().__init__(dim, layers, heads, ffn, 0.0, memories=("frame", "text"))
        self.num_queries = queries
        self.input_proj_dec = nn.Linear(dim, dim)
        self.hmp = HierarchicalMotionPerception(dim, hmp_layers, heads, ffn, window)
        self.fusion_layers = nn.ModuleList(
            BiAttentionBlock(dim, dim, ffn // 2, heads // 2, fusion_dropout, fusion_drop_path) for _ in range(layers))
        self.query_feat = nn.Embedding(queries, dim)
        self.query_embed = nn.Embedding(queries, dim)
        self.fq_pos = nn.Embedding(frame_queries, dim)
        self.cross_motion = AttentionLayer(dim, heads, motion_dropout)
        self.decoder_norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)
        self.sim_embed_frame = nn.Linear(dim, dim)
        self.sim_embed_clip = nn.Linear(dim, dim)
        self.contrastive_embed = MLP(dim, dim, dim, 3)
        self.vita_mask_features = nn.Conv2d(conv_dim, mask_dim, 1)  # the pixel decoder's mask features -> mask_dim
        nn.init.kaiming_uniform_(self.vita_mask_features.weight, a=1)  # detectron2's c2_xavier_fill
        nn.init.zeros_(self.vita_mask_features.bias)

    def forward(self, frame_queries: torch.Tensor, words: torch.Tensor, word_padding: torch.Tensor | None,
                cues: torch.Tensor, cue_padding: torch.Tensor | None = None) -> dict:
        """frame_queries (N, T, fQ, C); words (N, L, C) with padding (N, L) True where padded; motion cues
        (N, M, C) with padding (N, M).

        Returns ``logits`` (D, N, cQ, classes + 1), ``mask_embed`` (D, N, cQ, mask_dim), ``clip_embed``
        (D, N, cQ, C) and ``contrastive_embed`` (N, cQ, C) of the D predicting layers (every layer in training, the
        last otherwise), and ``frame_embed`` (N, T, fQ, C)."""
        n, t_len, fq, c = frame_queries.shape
        tokens = self.hmp(self.input_proj_dec(frame_queries), cues, cue_padding)  # (N, T, fQ, C)
        frame_embed = self.sim_embed_frame(tokens)
        src = tokens.flatten(1, 2)  # (N, T*fQ, C), token t * fQ + q
        pos = self.fq_pos.weight.repeat(t_len, 1)[None]
        query_pos = self.query_embed.weight[None].expand(n, -1, -1)
        out = self.query_feat.weight[None].expand(n, -1, -1)
        out = out + 0.1 * self.cross_motion(out, memory=cues, key_padding_mask=cue_padding)
        outputs = []
        for i in range(self.num_layers):
            src, words = self.fusion_layers[i](src, words, None, word_padding)
            out = self.layer(i, out, query_pos, frame={"memory": src, "pos": pos},
                             text={"memory": words, "key_padding_mask": word_padding, "query_pos": None})
            if self.training or i == self.num_layers - 1:
                outputs.append(self.decoder_norm(out))
        stacked = torch.stack(outputs)  # (D, N, cQ, C)
        return {"logits": self.class_embed(stacked), "mask_embed": self.mask_embed(stacked),
                "clip_embed": self.sim_embed_clip(stacked), "contrastive_embed": self.contrastive_embed(stacked[-1]),
                "frame_embed": frame_embed}
