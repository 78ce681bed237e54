"""ReferFormer's cross-modal FPN decoder (MUTR uses it unchanged): the mask features at stride 4, built top-down
from the encoder's memory (strides 32, 16, 8) and the backbone's stride-4 map, each level first made to read the
sentence.

    per level, coarse to fine: lateral 1x1 conv + GroupNorm(8)
        ─vision-language block: self-attention over the clip's tokens (all frames; queries, keys and values
         nearest-downsampled by ``sr_ratio`` 1, 2, 4, 8 from stride 32 to 4, the result upsampled back bilinearly),
         cross-attention to the words, FFN; post-norm─
        + the coarser result (nearest-upsampled) ─3x3 conv + GroupNorm(8) + ReLU─>
    ─3x3 conv─> mask features (N, mask_dim, H/4, W/4)

Frames attend to each other inside a clip, so the features of a frame depend on the clip's other frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rvos.models.modules.deform_pixel_decoder import conv_gn


class VisionLanguageBlock(nn.Module):
    def __init__(self, dim: int, heads: int = 8, ffn: int = 2048, dropout: float = 0.1, sr_ratio: int = 1):
        super().__init__()
        self.sr_ratio = sr_ratio
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor, words: torch.Tensor,
                word_pos: torch.Tensor, word_padding: torch.Tensor) -> torch.Tensor:
        """x, pos (B, T, C, h, w); padding (B, T, h, w); words, word_pos (B, L, C); word_padding (B, L)."""
        b, t_len, c, h, w = x.shape
        q = x + pos
        if self.sr_ratio > 1:
            size = (int(h / self.sr_ratio), int(w / self.sr_ratio))
            small = lambda m: F.interpolate(m.flatten(0, 1), size=size, mode="nearest")  # noqa: E731
            q, v = small(q), small(x)
            key_padding = small(padding.float()[:, :, None])[:, 0].bool().view(b, -1)
            q, v = [m.view(b, t_len, c, -1).permute(0, 1, 3, 2).flatten(1, 2) for m in (q, v)]
        else:
            size = (h, w)
            q, v = [m.flatten(3).permute(0, 1, 3, 2).flatten(1, 2) for m in (q, x)]
            key_padding = padding.flatten(1)
        out = self.self_attn(q, q, v, key_padding_mask=key_padding, need_weights=False)[0]  # (B, T*h'*w', C)
        out = out.view(b, t_len, *size, c).permute(0, 1, 4, 2, 3)
        if self.sr_ratio > 1:
            out = F.interpolate(out.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False).view(x.shape)
        tokens = lambda m: m.flatten(3).permute(0, 1, 3, 2).flatten(1, 2)  # noqa: E731 (B, T*h*w, C)
        y = self.norm1(tokens(x) + self.dropout(tokens(out)))
        read = self.multihead_attn(y + tokens(pos), words + word_pos, words, key_padding_mask=word_padding,
                                   need_weights=False)[0]
        y = self.norm2(y + self.dropout(read))
        y = self.norm3(y + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(y))))))
        return y.view(b, t_len, h, w, c).permute(0, 1, 4, 2, 3)


class CrossModalFPN(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256, mask_dim: int = 8, heads: int = 8, ffn: int = 2048,
                 norm_groups: int = 8, sr_ratios: tuple[int, ...] = (8, 4, 2, 1), dropout: float = 0.1):
        """in_channels: of the stride-4 backbone map, then of the memory at strides 8, 16, 32 (the official
        module's levels 1..4, fine to coarse)."""
        super().__init__()
        for level, (cin, sr) in enumerate(zip(in_channels, sr_ratios), start=1):
            self.add_module(f"adapter_{level}", conv_gn(cin, dim, 1, norm_groups))
            self.add_module(f"layer_{level}", conv_gn(dim, dim, 3, norm_groups, relu=True))
            self.add_module(f"cross_attn_{level}", VisionLanguageBlock(dim, heads, ffn, dropout, sr))
        self.levels = len(in_channels)
        self.mask_features = nn.Conv2d(dim, mask_dim, 3, padding=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, maps: list[torch.Tensor], poss: list[torch.Tensor], paddings: list[torch.Tensor],
                clip_length: int, words: torch.Tensor, word_pos: torch.Tensor,
                word_padding: torch.Tensor) -> torch.Tensor:
        """maps, poss (N, C_i, h_i, w_i), paddings (N, h_i, w_i), fine to coarse (the stride-4 backbone map, the
        memory at strides 8, 16, 32), N = clips x clip_length; words, word_pos (B, L, C); word_padding (B, L)
        -> the mask features (N, mask_dim, H/4, W/4)."""
        y = None
        for level in range(self.levels, 0, -1):
            x, pos, pad = maps[level - 1], poss[level - 1], paddings[level - 1]
            lateral = getattr(self, f"adapter_{level}")(x)
            clip = lambda m: m.view(-1, clip_length, *m.shape[1:])  # noqa: E731
            fused = getattr(self, f"cross_attn_{level}")(clip(lateral), clip(pos), clip(pad), words, word_pos,
                                                         word_padding).flatten(0, 1)
            if y is not None:
                fused = fused + F.interpolate(y, size=fused.shape[-2:], mode="nearest")
            y = getattr(self, f"layer_{level}")(fused)
        return self.mask_features(y)
