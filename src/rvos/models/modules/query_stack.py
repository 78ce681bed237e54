"""The layer stack every query decoder shares: per layer, cross-attention to each of its memories in a fixed
order, then self-attention, then FFN (Mask2Former's post-norm sub-layers, :mod:`rvos.models.layers.attention`).

A decoder subclasses :class:`QueryLayerStack`, names its memories (``("text", "image")`` gives the ModuleLists
``text_attn`` and ``image_attn``), and calls :meth:`QueryLayerStack.layer` in its own loop, where it adds what is
its own (masked attention, predictions after every layer, positions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer


def masked_attention(masks: torch.Tensor, size: tuple[int, int], heads: int) -> torch.Tensor:
    """Mask2Former's masked attention: mask logits (N, Q, h, w) -> (N * heads, Q, size) bool, True where a query may
    not attend (its mask, resized to the memory's map, below 0.5); a query whose mask is empty there attends
    everywhere."""
    attn = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    attn = (attn.sigmoid().flatten(2) < 0.5).detach()
    attn[attn.all(-1)] = False
    return attn.repeat_interleave(heads, dim=0)


def supervised_masks(mask_logits: Callable[..., torch.Tensor], outs: list[torch.Tensor], masks: list[torch.Tensor],
                     *per_query: torch.Tensor | None) -> list[torch.Tensor]:
    """The masks (N, Q, h, w) of a decoder's predictions, for the loss. A decoder predicts each layer's masks without
    gradient (its masked attention reads them) and, while gradients are recorded, ``mask_logits`` makes them again for
    every prediction's normalised queries ``outs`` (N, Q, C) in one call, with ``per_query`` inputs (N, Q, ...) repeated
    alike (None stays None). So the gradient of the mask features is one product too, instead of one per prediction
    added up: on a CPU a product whose inner size is the queries is bound by writing the features' size each time.
    Without gradients, ``masks`` as predicted."""
    if not torch.is_grad_enabled():
        return masks
    repeated = [None if x is None else x.repeat(1, len(outs), *[1] * (x.dim() - 2)) for x in per_query]
    return list(mask_logits(torch.cat(outs, 1), *repeated).split(outs[0].shape[1], dim=1))


class QueryLayerStack(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int, ffn: int, dropout: float, memories: tuple[str, ...]):
        super().__init__()
        self.memories = memories
        for name in memories:
            setattr(self, f"{name}_attn", nn.ModuleList(AttentionLayer(dim, heads, dropout) for _ in range(layers)))
        self.self_attn = nn.ModuleList(AttentionLayer(dim, heads, dropout) for _ in range(layers))
        self.ffn = nn.ModuleList(FFNLayer(dim, ffn, dropout) for _ in range(layers))

    @property
    def num_layers(self) -> int:
        return len(self.ffn)

    def layer(self, i: int, queries: torch.Tensor, query_pos: torch.Tensor | None, **memories: dict) -> torch.Tensor:
        """Layer ``i``: ``memories[name]`` holds the keyword arguments of that cross-attention (``memory``,
        ``pos``, ``attn_mask``, ``key_padding_mask``, and ``query_pos`` where that attention uses its own, None
        included)."""
        for name in self.memories:
            queries = getattr(self, f"{name}_attn")[i](queries, **({"query_pos": query_pos} | memories[name]))
        queries = self.self_attn[i](queries, query_pos=query_pos)
        return self.ffn[i](queries)
