"""DsHmp's frame decoder: Mask2Former's masked-attention decoder on each frame, its learned queries given the
sentence's static cues, with bi-directional pixel-word attention in every layer.

The queries start as learned content plus ``0.1 *`` a cross-attention of that content to the static cues
(``q + 0.1 * xattn(q, cues)``, the whole post-norm layer's output scaled, as the official code). Each layer, on the
maps round robin from coarse to fine:

1. bi-attention between the level's pixels and the words (GLIP-style); both results are used in this layer only
   (the next layer fuses the original pixels and words again);
2. masked cross-attention to the fused pixels (a query sees the pixels its previous mask holds; a query whose mask
   is empty at this level sees all of them);
3. cross-attention to the fused words (no query position);
4. self-attention, FFN.

A prediction (class logits over ``num_classes + 1``, masks) is made from the initial queries and after every layer.
The normalised queries of the last ``keep`` layers are the frame queries the clip stage reads.

With ``proposals`` (a CPU-size option, off in the paper config) a frame's queries start at the peaks of a
class-agnostic centre heatmap read from the mask features, as conv-CLIP's tiny config's do
(:mod:`rvos.models.modules.proposals`): each query's content is its learned content plus the mask feature at its peak,
its position embedding the peak's, and its mask gets a term on the coordinates relative to the peak. Learned queries
find the objects through masked attention slowly (DETR's slow convergence): in a CPU run they segment small objects
poorly (``benchmarks/results/synth_learning.md``).

Parameter names follow the official ``DshmpMultiScaleMaskedTransformerDecoder`` where they can (``query_feat``,
``cross_static``, ``fusion_layers``, ``input_proj``, ``level_embed``...); the attention stack is rvos's shared one.
"""

from __future__ import annotations

import torch
from torch import nn

from rvos.models.layers.attention import MLP, AttentionLayer
from rvos.models.layers.bi_attention import BiAttentionBlock
from rvos.models.layers.position_encoding import sine_2d
from rvos.models.modules.proposals import ProposalHead
from rvos.models.modules.query_stack import QueryLayerStack, masked_attention, supervised_masks


class StaticQueryDecoder(QueryLayerStack):
    def __init__(self, in_channels: int = 256, dim: int = 256, queries: int = 20, heads: int = 8, ffn: int = 2048,
                 layers: int = 9, num_classes: int = 1, mask_dim: int = 256, levels: int = 3,
                 input_proj: bool = False, fusion_dropout: float = 0.1, fusion_drop_path: float = 0.1,
                 static_dropout: float = 0.1, proposals: bool = False, proposal_pool: int = 1):
        super().__init__(dim, layers, heads, ffn, 0.0, memories=("image", "text"))
        self.dim, self.num_queries, self.heads, self.levels = dim, queries, heads, levels
        self.fusion_layers = nn.ModuleList(
            BiAttentionBlock(dim, dim, ffn // 2, heads // 2, fusion_dropout, fusion_drop_path) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.query_feat = nn.Embedding(queries, dim)
        self.query_embed = nn.Embedding(queries, dim)
        self.level_embed = nn.Embedding(levels, dim)
        self.input_proj = nn.ModuleList()
        for _ in range(levels):
            if in_channels != dim or input_proj:
                conv = nn.Conv2d(in_channels, dim, 1)
                nn.init.kaiming_uniform_(conv.weight, a=1)  # detectron2's c2_xavier_fill
                nn.init.zeros_(conv.bias)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(dim, num_classes + 1)
        self.mask_embed = MLP(dim, dim, mask_dim, 3)
        self.cross_static = AttentionLayer(dim, heads, static_dropout)
        # proposal_pool: mask-grid cells per heatmap cell (2 with stride-2 mask features: the heatmap stays at stride 4)
        self.proposals = ProposalHead(mask_dim, dim, queries, pool=proposal_pool) if proposals else None

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor, attn_size: tuple[int, int],
                anchors: torch.Tensor | None = None):
        """Class logits (N, Q, K+1), masks (N, Q, H/4, W/4), the next layer's attention mask (N*heads, Q, h*w; see
        :func:`masked_attention`), and the normalised queries (N, Q, C). The masks carry no gradient
        (:func:`~rvos.models.modules.query_stack.supervised_masks`)."""
        out = self.decoder_norm(queries)
        with torch.no_grad():
            masks = self.mask_logits(out, mask_features, anchors)
        return self.class_embed(out), masks, masked_attention(masks, attn_size, self.heads), out

    def mask_logits(self, out: torch.Tensor, mask_features: torch.Tensor,
                    anchors: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised queries (N, Q', C) -> their mask logits (N, Q', H/4, W/4); with proposals, ``anchors``
        (N, Q', 2) their peaks, whose relative-coordinate term is added."""
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_embed(out), mask_features)
        if anchors is not None:
            masks = masks + self.proposals.mask_term(out, anchors, masks.shape[-2:])
        return masks

    def forward(self, maps: list[torch.Tensor], mask_features: torch.Tensor, words: torch.Tensor,
                word_padding: torch.Tensor | None, cues: torch.Tensor, cue_padding: torch.Tensor | None = None,
                keep: int = 1) -> dict:
        """maps: ``levels`` maps from coarse to fine (N, C_in, h, w); mask_features (N, mask_dim, H/4, W/4); words
        (N, L, C) with padding (N, L) True where padded; static cues (N, S, C) with padding (N, S).

        Returns ``logits`` and ``masks``: per prediction (initial queries, then every layer) (N, Q, K+1) and
        (N, Q, H/4, W/4); ``frame_queries`` (keep, N, Q, C): the normalised queries of the last ``keep`` layers; with
        proposals ``objectness`` (N, 1, H/4, W/4) the heatmap's logits, ``anchors`` (N, Q, 2) the queries' peaks on
        its grid and ``peaks`` (N, Q) its probability there (else None)."""
        n = mask_features.shape[0]
        memories, poss, sizes = [], [], []
        for level, m in enumerate(maps):
            h, w = m.shape[-2:]
            sizes.append((h, w))
            poss.append(sine_2d(h, w, self.dim // 2, device=m.device).flatten(1).T[None])
            memories.append(self.input_proj[level](m).flatten(2).transpose(1, 2) + self.level_embed.weight[level])
        query_pos = self.query_embed.weight[None].expand(n, -1, -1)
        queries = self.query_feat.weight[None].expand(n, -1, -1)
        objectness = anchors = peaks = None
        if self.proposals is not None:
            objectness, anchors, peaks, content, query_pos = self.proposals(mask_features)
            queries = queries + content
        queries = queries + 0.1 * self.cross_static(queries, memory=cues, key_padding_mask=cue_padding)
        logits, masks, attn, out = self.predict(queries, mask_features, sizes[0], anchors)
        all_logits, all_masks, all_out, frame_queries = [logits], [masks], [out], []
        for i in range(self.num_layers):
            level = i % self.levels
            pixels, fused_words = self.fusion_layers[i](memories[level], words, None, word_padding)
            queries = self.layer(i, queries, query_pos, image={"memory": pixels, "pos": poss[level], "attn_mask": attn},
                                 text={"memory": fused_words, "key_padding_mask": word_padding, "query_pos": None})
            logits, masks, attn, out = self.predict(queries, mask_features, sizes[(i + 1) % self.levels], anchors)
            all_logits.append(logits)
            all_masks.append(masks)
            all_out.append(out)
            frame_queries.append(out)
        all_masks = supervised_masks(lambda out, at: self.mask_logits(out, mask_features, at), all_out, all_masks,
                                     anchors)
        return {"logits": all_logits, "masks": all_masks, "frame_queries": torch.stack(frame_queries[-keep:]),
                "objectness": objectness, "anchors": anchors, "peaks": peaks}
