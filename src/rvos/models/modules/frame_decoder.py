"""Frame query decoder: Mask2Former's masked-attention decoder run on each frame, with the queries initialised
from the sentence and a text cross-attention added to every layer.

Each layer: text cross-attention, masked image cross-attention (a query only sees the pixels its previous mask
prediction holds; round robin over the stride 32 / 16 / 8 maps), self-attention, FFN. A prediction (referring
score and mask) is made from the initial queries and after every layer, for deep supervision.

With ``boxes`` (an option for learning on a CPU, not in the report) every prediction also has a box per query,
which the set criterion supervises and matches with (DETR's L1 and GIoU terms). A query that must say where its
object is keeps to one of several identical objects, which a mask made only of a query's embedding dotted with
pixel features tends to cover together.

:meth:`FrameQueryDecoder.propagate` decodes the frames of a clip in order, each frame's queries starting from the
previous frame's (tracking by query, as TrackFormer and MOTR do; a CPU-size option of ``vlm``): query q is then one
lineage over the clip, so the slots need no linking after decoding.

With ``proposals`` (a CPU-size option of ``vlm``) a frame's queries start at the peaks of an objectness heatmap
and each query's mask gets a term on the coordinates relative to its peak (:mod:`rvos.models.modules.proposals`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rvos.models.layers.attention import MLP
from rvos.models.layers.position_encoding import sine_2d
from rvos.models.layers.score_head import ScoreHead
from rvos.models.modules.proposals import ProposalHead
from rvos.models.modules.query_stack import QueryLayerStack, masked_attention, supervised_masks


@dataclass
class FrameDecoding:
    scores: list[torch.Tensor]  # per prediction (N, Q)
    masks: list[torch.Tensor]  # per prediction (N, Q, h, w) on the mask features' grid
    boxes: list[torch.Tensor] | None  # per prediction (N, Q, 4), with ``boxes``
    queries: torch.Tensor  # (N, Q, C) the last layer's, normalised
    last: torch.Tensor  # (N, Q, C) the last layer's raw queries (what :meth:`FrameQueryDecoder.propagate` carries)
    objectness: torch.Tensor | None = None  # (N, 1, h', w') heatmap logits, with ``proposals``
    anchors: torch.Tensor | None = None  # (N, Q, 2) the queries' peaks (x, y) on the heatmap's grid, with ``proposals``
    peaks: torch.Tensor | None = None  # (N, Q) the heatmap's probability at the queries' peaks, with ``proposals``


class FrameQueryDecoder(QueryLayerStack):
    def __init__(self, dim: int = 256, num_queries: int = 20, layers: int = 9, heads: int = 8, ffn: int = 2048,
                 mask_dim: int = 256, dropout: float = 0.0, levels: int = 3, text_score: bool = True,
                 query_content: bool = False, boxes: bool = False, proposals: bool = False, proposal_pool: int = 1):
        """``proposal_pool``: the proposals' heatmap cell in cells of the mask grid (:class:`ProposalHead`)."""
        super().__init__(dim, layers, heads, ffn, dropout, memories=("text", "image"))
        self.num_queries, self.heads, self.levels = num_queries, heads, levels
        # a learned position per query, or with proposals the embedding of the query's peak
        self.query_pos = nn.Embedding(num_queries, dim) if not proposals else None
        # a learned content per query added to the sentence, so the queries differ from the first prediction on
        self.query_content = nn.Embedding(num_queries, dim) if query_content else None
        self.level_embed = nn.Embedding(levels, dim)
        self.norm = nn.LayerNorm(dim)
        self.score_head = ScoreHead(dim, text_score)
        self.mask_head = MLP(dim, dim, mask_dim, 3)
        self.box_head = MLP(dim, dim, 4, 3) if boxes else None  # (cx, cy, w, h) in [0, 1] of the padded frame
        self.proposals = ProposalHead(mask_dim, dim, num_queries, pool=proposal_pool) if proposals else None

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor, attn_size: tuple[int, int],
                sentence: torch.Tensor, anchors: torch.Tensor | None = None):
        """Scores (N, Q), masks (N, Q, h, w), boxes (N, Q, 4) or None, the attention mask for the next layer and
        the normalised queries; ``anchors`` (N, Q, 2): the proposals' peaks. The masks carry no gradient
        (:func:`~rvos.models.modules.query_stack.supervised_masks`)."""
        out = self.norm(queries)
        scores = self.score_head(out, sentence)
        with torch.no_grad():
            masks = self.mask_logits(out, mask_features, anchors)
        boxes = self.box_head(out).sigmoid() if self.box_head is not None else None
        return scores, masks, boxes, masked_attention(masks, attn_size, self.heads), out

    def mask_logits(self, out: torch.Tensor, mask_features: torch.Tensor,
                    anchors: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised queries (N, Q', C) -> their mask logits (N, Q', h, w); with proposals, ``anchors`` (N, Q', 2)
        are their peaks."""
        masks = torch.einsum("nqc,nchw->nqhw", self.mask_head(out), mask_features)
        if anchors is not None:
            masks = masks + self.proposals.mask_term(out, anchors, masks.shape[-2:])
        return masks

    def initial_queries(self, sentence: torch.Tensor) -> torch.Tensor:
        """The queries a frame (or a clip's first frame) starts from: the sentence (N, C), plus a learned content per
        query with ``query_content`` -> (N, Q, C)."""
        queries = sentence[:, None].expand(-1, self.num_queries, -1)
        return queries + self.query_content.weight[None] if self.query_content is not None else queries

    def forward(self, maps: list[torch.Tensor], mask_features: torch.Tensor, sentence: torch.Tensor,
                words: torch.Tensor, word_padding: torch.Tensor, init: torch.Tensor | None = None):
        """maps: encoded maps from coarse to fine (N, C, h, w); sentence (N, C); words (N, L, C); init (N, Q, C)
        the queries to start from (default :meth:`initial_queries`, or with ``proposals`` the heatmap's peaks) ->
        a :class:`FrameDecoding`."""
        n = sentence.shape[0]
        memories, poss, sizes = [], [], []
        for level, m in enumerate(maps):
            _, c, h, w = m.shape
            sizes.append((h, w))
            memories.append(m.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
            poss.append(sine_2d(h, w, c // 2, device=m.device, dtype=m.dtype).flatten(1).transpose(0, 1)[None])
        queries = self.initial_queries(sentence) if init is None else init
        objectness = anchors = peaks = None
        if self.proposals is not None:
            objectness, anchors, peaks, content, query_pos = self.proposals(mask_features)
            queries = queries + content
        else:
            query_pos = self.query_pos.weight[None].expand(n, -1, -1)
        scores, masks, boxes, attn, out = self.predict(queries, mask_features, sizes[0], sentence, anchors)
        all_scores, all_masks, all_boxes, all_out = [scores], [masks], [boxes], [out]
        for i in range(self.num_layers):
            level = i % self.levels
            queries = self.layer(i, queries, query_pos, text={"memory": words, "key_padding_mask": word_padding},
                                 image={"memory": memories[level], "pos": poss[level], "attn_mask": attn})
            scores, masks, boxes, attn, out = self.predict(queries, mask_features, sizes[(i + 1) % self.levels],
                                                           sentence, anchors)
            all_scores.append(scores)
            all_masks.append(masks)
            all_boxes.append(boxes)
            all_out.append(out)
        all_masks = supervised_masks(lambda out, at: self.mask_logits(out, mask_features, at), all_out, all_masks,
                                     anchors)
        return FrameDecoding(all_scores, all_masks, all_boxes if self.box_head is not None else None, out, queries,
                             objectness, anchors, peaks)

    def propagate(self, maps: list[torch.Tensor], mask_features: torch.Tensor, sentence: torch.Tensor,
                  words: torch.Tensor, word_padding: torch.Tensor, clip_length: int, init: torch.Tensor | None = None):
        """:meth:`forward` on clips of ``clip_length`` frames (inputs frame by frame, clip major: N = B * T), one
        frame after the other: frame t starts from frame t-1's raw last-layer queries, the first frame from ``init``
        (B, Q, C) (a previous window's last queries) or :meth:`initial_queries`. The same :class:`FrameDecoding`,
        frames in the input's order."""
        if self.proposals is not None:
            raise ValueError("a frame decoder with proposals starts every frame from its own heatmap: it does not "
                             "propagate queries")
        b = sentence.shape[0] // clip_length
        at = lambda x, t: x.view(b, clip_length, *x.shape[1:])[:, t]  # noqa: E731
        steps, queries = [], init
        for t in range(clip_length):
            step = self([at(m, t) for m in maps], at(mask_features, t), at(sentence, t), at(words, t),
                        at(word_padding, t), queries)
            steps.append(step)
            queries = step.last
        joined = lambda xs: torch.stack(xs, 1).flatten(0, 1)  # noqa: E731  (B, T, ...) -> (B * T, ...)
        per_prediction = lambda key: [joined([getattr(s, key)[k] for s in steps])  # noqa: E731
                                      for k in range(len(getattr(steps[0], key)))]
        boxes = per_prediction("boxes") if self.box_head is not None else None
        return FrameDecoding(per_prediction("scores"), per_prediction("masks"), boxes,
                             joined([s.queries for s in steps]), joined([s.last for s in steps]))
