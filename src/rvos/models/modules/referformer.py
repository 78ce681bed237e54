"""What the ReferFormer-style methods (SgMg, MUTR) share around their deformable transformer: the configs of the
text encoder, the image backbone and the transformer, the backbone's construction, the sentence as the models read
it, and the fusion of each visual level with the words."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rvos.models.backbones.timm_image import TimmImageBackbone
from rvos.models.backbones.video_swin import VideoSwinBackbone


@dataclass
class TextConfig:
    model: str = "roberta-base"  # transformers model: a folder, a bundled name, or a Hugging Face repo id
    pretrained: bool = True  # false: random weights (trained from scratch, or loaded from a whole checkpoint)
    frozen: bool = True  # the main training freezes it; image pre-training trains it (lr x text_lr_mult)
    max_tokens: int = 512  # the official tokenizer pads to the longest sentence and never truncates
    cache_dir: str | None = None


@dataclass
class BackboneConfig:
    kind: str = "video_swin"  # "video_swin" (torchvision's Swin3D) or "timm" (Swin, ResNet, ... per frame)
    variant: str = "t"  # video Swin: t, s or b (or xs, a CPU size)
    # a custom video Swin's sizes, each replacing the variant's (null: the variant's)
    embed_dim: int | None = None
    depths: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    patch_time: int = 1  # frames per temporal patch (1: per-frame features, as SgMg and MUTR use it)
    window: tuple[int, int, int] = (8, 7, 7)
    drop_path: float = 0.2
    timm_model: str = "swin_tiny_patch4_window7_224"  # kind timm: the model name
    timm_out_indices: tuple[int, ...] = (0, 1, 2, 3)  # its stages at strides 4..32 ((1, 2, 3, 4) for a ResNet)
    pretrained: str | None = None  # a local weights file (or "timm" for timm's default weights); null: random
    frozen: bool = False

    def __post_init__(self):
        if self.kind not in ("video_swin", "timm"):
            raise ValueError(f"model.backbone.kind: expected video_swin or timm, got {self.kind!r}")


@dataclass
class TransformerConfig:
    enc_layers: int = 4
    dec_layers: int = 4
    heads: int = 8
    ffn: int = 2048
    dropout: float = 0.1
    enc_points: int = 4
    dec_points: int = 4


def build_backbone(cfg: BackboneConfig):
    if cfg.kind == "video_swin":
        return VideoSwinBackbone(cfg.variant, cfg.pretrained, cfg.patch_time, tuple(cfg.window), cfg.drop_path,
                                 cfg.frozen, cfg.embed_dim, cfg.depths, cfg.heads)
    return TimmImageBackbone(cfg.timm_model, cfg.pretrained, tuple(cfg.timm_out_indices), frozen=cfg.frozen)


class WordFusion(nn.Module):
    """Each visual token reads the words (``attn(v, words + pos, words)``) and is updated by what it read:
    multiplied (SgMg) or added (ReferFormer, MUTR)."""

    def __init__(self, dim: int, heads: int, mode: str = "add"):
        super().__init__()
        if mode not in ("add", "multiply"):
            raise ValueError(f"word fusion: expected add or multiply, got {mode!r}")
        self.mode = mode
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, visual: torch.Tensor, words: torch.Tensor, padding: torch.Tensor, pos: torch.Tensor):
        """visual (N, C, h, w); words, pos (N, L, C); padding (N, L) -> (N, C, h, w)."""
        n, c, h, w = visual.shape
        v = visual.flatten(2).transpose(1, 2)
        read = self.multihead_attn(v, words + pos, words, key_padding_mask=padding, need_weights=False)[0]
        out = v * read if self.mode == "multiply" else v + read
        return out.transpose(1, 2).reshape(n, c, h, w)


@dataclass
class EncodedText:
    words: torch.Tensor  # (B, L, C)
    padding: torch.Tensor  # (B, L)
    pos: torch.Tensor  # (B, L, C)
    sentence: torch.Tensor  # (B, C)

    def take(self, k: int, n: int) -> "EncodedText":
        """Sentence ``k`` for ``n`` frames."""
        return EncodedText(*(x[k : k + 1].expand(n, *x.shape[1:]) for x in vars(self).values()))

    def repeat(self, n: int) -> "EncodedText":
        """Every sentence for each of its clip's ``n`` frames."""
        return EncodedText(*(x.repeat_interleave(n, dim=0) for x in vars(self).values()))
