"""Deformable DETR's transformer as ReferFormer, SgMg and MUTR use it: an encoder of multi-scale deformable
self-attention over every level of a frame, and a decoder whose queries read the encoded levels by deformable
cross-attention around reference points, refined after every layer into boxes (iterative box refinement).

Inputs follow Deformable DETR: per level a map (N, C, h, w), its padding mask (N, h, w) (True on padding) and its
position encoding; the reference points are scaled by each level's valid fraction so that they address the
unpadded image. Names of parameters follow the official modules, so checkpoints map one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from rvos.models.layers.ms_deform_attn import MSDeformAttn
from rvos.models.modules.deform_pixel_decoder import DeformEncoderLayer


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def valid_ratios(padding: torch.Tensor) -> torch.Tensor:
    """padding (N, h, w) -> (N, 2): the unpadded fraction of the width and of the height."""
    h, w = padding.shape[-2:]
    valid = ~padding
    return torch.stack([valid[:, 0, :].sum(1).float() / w, valid[:, :, 0].sum(1).float() / h], -1)


def encoder_reference_points(shapes: list[tuple[int, int]], ratios: torch.Tensor) -> torch.Tensor:
    """The centres of every level's valid pixels, normalised to the valid area, then seen from every level:
    (N, S, L, 2) as (x, y); ``ratios`` (N, L, 2)."""
    refs = []
    for level, (h, w) in enumerate(shapes):
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=ratios.device),
                              torch.linspace(0.5, w - 0.5, w, device=ratios.device), indexing="ij")
        y = y.reshape(-1)[None] / (ratios[:, None, level, 1] * h)
        x = x.reshape(-1)[None] / (ratios[:, None, level, 0] * w)
        refs.append(torch.stack([x, y], -1))
    return torch.cat(refs, 1)[:, :, None] * ratios[:, None]


class DeformDecoderLayer(nn.Module):
    """Self-attention among the queries, deformable cross-attention to the encoded levels, FFN; each post-norm."""

    def __init__(self, dim: int, ffn: int, levels: int, heads: int, points: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformAttn(dim, levels, heads, points)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor, memory: torch.Tensor,
                shapes: list[tuple[int, int]], padding: torch.Tensor | None, frames: int = 1) -> torch.Tensor:
        """``frames``: the N maps are clips of that many frames, and the self-attention reads the queries of every
        frame of a query's clip (1: of its own frame, as the official decoders do)."""
        n, k, c = x.shape
        q = (x + pos).reshape(n // frames, frames * k, c)
        read = self.self_attn(q, q, x.reshape(q.shape), need_weights=False)[0].reshape(n, k, c)
        x = self.norm2(x + self.dropout(read))
        x = self.norm1(x + self.dropout(self.cross_attn(x + pos, reference_points, memory, shapes, padding)))
        return self.norm3(x + self.dropout(self.linear2(self.dropout(torch.relu(self.linear1(x))))))


class DeformableEncoder(nn.Module):
    def __init__(self, dim: int, ffn: int, levels: int, heads: int, points: int, layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(DeformEncoderLayer(dim, ffn, levels, heads, points, dropout) for _ in range(layers))

    def forward(self, src, pos, shapes, ratios, padding):
        points = encoder_reference_points(shapes, ratios)
        for layer in self.layers:
            src = layer(src, pos, points, shapes, padding)
        return src


class DeformableDecoder(nn.Module):
    def __init__(self, dim: int, ffn: int, levels: int, heads: int, points: int, layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(DeformDecoderLayer(dim, ffn, levels, heads, points, dropout) for _ in range(layers))

    def forward(self, x, pos, reference, memory, shapes, ratios, padding, bbox_embed: nn.ModuleList, frames: int = 1):
        """x, pos (N, Q, C); reference (N, Q, 2) in [0, 1] -> every layer's queries (L, N, Q, C) and boxes
        (L, N, Q, 4) (cx, cy, w, h) in [0, 1]: layer l's box is ``bbox_embed[l]`` of its queries added to the
        inverse sigmoid of the reference it read (the centre only, for the first layer), and becomes the next
        layer's reference (without gradient)."""
        outputs, boxes = [], []
        for layer, head in zip(self.layers, bbox_embed):
            scale = ratios if reference.shape[-1] == 2 else torch.cat([ratios, ratios], -1)
            x = layer(x, pos, reference[:, :, None] * scale[:, None], memory, shapes, padding, frames)
            delta = head(x)
            if reference.shape[-1] == 4:
                box = (delta + inverse_sigmoid(reference)).sigmoid()
            else:
                box = torch.cat([delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]], -1).sigmoid()
            outputs.append(x)
            boxes.append(box)
            reference = box.detach()
        return torch.stack(outputs), torch.stack(boxes)


class DeformableTransformer(nn.Module):
    """Encoder and decoder. :meth:`encode` gives the memory; :meth:`decode` the queries and boxes of every layer."""

    def __init__(self, dim: int = 256, heads: int = 8, enc_layers: int = 4, dec_layers: int = 4, ffn: int = 2048,
                 dropout: float = 0.1, levels: int = 4, enc_points: int = 4, dec_points: int = 4):
        super().__init__()
        self.encoder = DeformableEncoder(dim, ffn, levels, heads, enc_points, enc_layers, dropout)
        self.decoder = DeformableDecoder(dim, ffn, levels, heads, dec_points, dec_layers, dropout)
        self.level_embed = nn.Parameter(torch.empty(levels, dim))
        self.reference_points = nn.Linear(dim, 2)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def encode(self, srcs: list[torch.Tensor], paddings: list[torch.Tensor], poss: list[torch.Tensor]):
        """Per level (N, C, h, w) maps, (N, h, w) paddings and (N, C, h, w) positions -> (memory (N, S, C), the
        levels' shapes, valid ratios (N, L, 2), the flat padding (N, S))."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i] for i, p in enumerate(poss)], 1)
        padding = torch.cat([m.flatten(1) for m in paddings], 1)
        ratios = torch.stack([valid_ratios(m) for m in paddings], 1)
        return self.encoder(src, pos, shapes, ratios, padding), shapes, ratios, padding

    def decode(self, tgt: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor, shapes, ratios, padding,
               bbox_embed: nn.ModuleList, frames: int = 1, reference: torch.Tensor | None = None):
        """tgt (N, Q, C) content, query_pos (Q, C) learned or (N, Q, C) per map -> (queries (L, N, Q, C), boxes (L, N,
        Q, 4)); ``frames`` > 1: the N maps are clips of that many frames, and the queries' self-attention spans a clip;
        ``reference`` (N, Q, 2): the queries' first reference points in [0, 1] of the valid area (default: read from
        the positions, as Deformable DETR's one-stage decoder does)."""
        pos = query_pos if query_pos.dim() == 3 else query_pos[None].expand(tgt.shape[0], -1, -1)
        if reference is None:
            reference = self.reference_points(pos).sigmoid()
        return self.decoder(tgt, pos, reference, memory, shapes, ratios, padding, bbox_embed, frames)
