"""Cross-modal encoder: Mask2Former's deformable-attention pixel decoder, with image-to-text and text-to-image
cross-attention in every layer (as Grounding DINO's feature enhancer), so that both modalities leave enhanced.

Input: backbone features at strides 4, 8, 16, 32 of N frames, and each frame's words (N, L, C). The layers run
over the stride 8/16/32 maps; the stride-4 map is fused in afterwards (lateral + output conv) and projected to the
mask features. Output: mask features (N, mask_dim, H/4, W/4), the three encoded maps from coarse to fine, and the
enhanced words.

With ``fine_channels`` (a CPU-size option of ``vlm``, not the report's) the mask features are at stride 2: the stride-4
mask features upsampled, plus a projection of a small stem on the frames themselves (:class:`FineStem`, two 3x3
convolutions), which starts at zero. At stride 4 a 12-pixel square keeps 3 cells, and even the target squeezed
through that grid covers the synthetic benchmark's small objects at IoU 0.85 (0.96 at stride 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.layers.attention import AttentionLayer, FFNLayer
from rvos.models.layers.ms_deform_attn import MSDeformAttn
from rvos.models.modules.deform_pixel_decoder import conv_gn, flatten_levels, input_projection, unflatten_levels


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


class FineStem(nn.Module):
    """Frames (N, 3, H, W) in [0, 1] -> features (N, channels, H/2, W/2): a stride-2 3x3 convolution and a 3x3
    convolution, each with GroupNorm and ReLU. Text-independent, so sessions compute it with the backbone's maps."""

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        groups = min(norm_groups, channels)
        first = nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False)
        nn.init.kaiming_uniform_(first.weight, a=1)
        self.layers = nn.Sequential(first, nn.GroupNorm(groups, channels), nn.ReLU(),
                                    conv_gn(channels, channels, 3, groups, relu=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


class CrossModalPixelDecoder(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256, mask_dim: int = 256, layers: int = 6, heads: int = 8,
                 points: int = 4, ffn: int = 1024, dropout: float = 0.0, norm_groups: int = 32,
                 fine_channels: int = 0):
        """``fine_channels``: the :class:`FineStem`'s width (0: none, mask features at stride 4); its map is then the
        first of the features :meth:`forward` takes."""
        super().__init__()
        self.levels = 3  # strides 8, 16, 32
        # input projections from coarse to fine (stride 32, 16, 8), as Mask2Former orders them
        self.input_proj = nn.ModuleList()
        for cin in reversed(in_channels[1:]):
            self.input_proj.append(input_projection(nn.Conv2d(cin, dim, 1), norm_groups))
        self.level_embed = nn.Parameter(torch.empty(self.levels, dim).normal_())
        self.layers = nn.ModuleList(CrossModalEncoderLayer(dim, heads, self.levels, points, ffn, dropout)
                                    for _ in range(layers))
        self.lateral = conv_gn(in_channels[0], dim, 1, norm_groups)
        self.output = conv_gn(dim, dim, 3, norm_groups, relu=True)
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        self.fine = None
        if fine_channels:  # starts at zero: the stride-2 mask features begin as the stride-4 ones upsampled
            self.fine = nn.Conv2d(fine_channels, mask_dim, 1)
            nn.init.zeros_(self.fine.weight)
            nn.init.zeros_(self.fine.bias)

    def forward(self, features: list[torch.Tensor], words: torch.Tensor, word_padding: torch.Tensor):
        """features: 4 maps (N, C_i, H_i, W_i) at strides 4..32, after the :class:`FineStem`'s map (N, C, H/2, W/2)
        with ``fine_channels``; words (N, L, dim); word_padding (N, L)."""
        stem = None
        if self.fine is not None:
            stem, features = features[0], features[1:]
        src, pos, shapes, points = flatten_levels(self.input_proj, list(reversed(features[1:])), self.level_embed)
        for layer in self.layers:
            src, words = layer(src, pos, points, shapes, words, word_padding)
        maps = unflatten_levels(src, shapes)
        fine = self.lateral(features[0])
        fine = self.output(fine + F.interpolate(maps[-1], size=fine.shape[-2:], mode="bilinear", align_corners=False))
        mask_features = self.mask_features(fine)
        if stem is not None:
            mask_features = F.interpolate(mask_features, size=stem.shape[-2:], mode="bilinear", align_corners=False) \
                + self.fine(stem)
        return mask_features, maps, words
