"""Cross-modal encoder: Mask2Former's deformable-attention pixel decoder, with image-to-text and text-to-image
cross-attention in every layer (as Grounding DINO's feature enhancer), so that both modalities leave enhanced.

Input: backbone features at strides 4, 8, 16, 32 of N frames, and each frame's words (N, L, C). The layers run
over the stride 8/16/32 maps; the stride-4 map is fused in afterwards (lateral + output conv) and projected to the
mask features. Output: mask features (N, mask_dim, H/4, W/4), the three encoded maps from coarse to fine, and the
enhanced words.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer
from rvos.models.layers.ms_deform_attn import MSDeformAttn
from rvos.models.modules.deform_pixel_decoder import conv_gn, flatten_levels, unflatten_levels


class CrossModalEncoderLayer(nn.Module):
    """Text-to-image and image-to-text cross-attention, then deformable self-attention and FFN on the image
    tokens and an FFN on the words."""

    def __init__(self, dim: int, heads: int, levels: int, points: int, ffn: int, dropout: float):
        super().__init__()
        self.text_to_image = AttentionLayer(dim, heads, dropout)
        self.image_to_text = AttentionLayer(dim, heads, dropout)
        self.self_attn = MSDeformAttn(dim, levels, heads, points)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = FFNLayer(dim, ffn, dropout)
        self.text_ffn = FFNLayer(dim, ffn, dropout)

    def forward(self, src, pos, reference_points, shapes, words, word_padding):
        # the words carry CLIP's position embedding already; the image tokens get theirs added to q / k
        src = self.text_to_image(src, words, query_pos=pos, key_padding_mask=word_padding)
        words = self.image_to_text(words, src, pos=pos)
        src = self.norm(src + self.dropout(self.self_attn(src + pos, reference_points, src, shapes)))
        return self.ffn(src), self.text_ffn(words)


class CrossModalPixelDecoder(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256, mask_dim: int = 256, layers: int = 6, heads: int = 8,
                 points: int = 4, ffn: int = 1024, dropout: float = 0.0, norm_groups: int = 32):
        super().__init__()
        self.levels = 3  # strides 8, 16, 32
        # input projections from coarse to fine (stride 32, 16, 8), as Mask2Former orders them
        self.input_proj = nn.ModuleList()
        for cin in reversed(in_channels[1:]):
            conv = nn.Conv2d(cin, dim, 1)
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            self.input_proj.append(nn.Sequential(conv, nn.GroupNorm(norm_groups, dim)))
        self.level_embed = nn.Parameter(torch.empty(self.levels, dim).normal_())
        self.layers = nn.ModuleList(CrossModalEncoderLayer(dim, heads, self.levels, points, ffn, dropout)
                                    for _ in range(layers))
        self.lateral = conv_gn(in_channels[0], dim, 1, norm_groups)
        self.output = conv_gn(dim, dim, 3, norm_groups, relu=True)
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: list[torch.Tensor], words: torch.Tensor, word_padding: torch.Tensor):
        """features: 4 maps (N, C_i, H_i, W_i) at strides 4..32; words (N, L, dim); word_padding (N, L)."""
        src, pos, shapes, points = flatten_levels(self.input_proj, list(reversed(features[1:])), self.level_embed)
        for layer in self.layers:
            src, words = layer(src, pos, points, shapes, words, word_padding)
        maps = unflatten_levels(src, shapes)
        fine = self.lateral(features[0])
        fine = self.output(fine + F.interpolate(maps[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False))
        return self.mask_features(fine), maps, words
