"""What the ReferFormer-style methods (SgMg, MUTR) share around their deformable transformer: the configs of the
text encoder, the image backbone and the transformer, the backbone's construction, the sentence as the models read
it, the fusion of each visual level with the words, and a base class building the parts both have."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rvos.errors import ConfigError
from rvos.models.backbones.hf_text import HFTextEncoder
from rvos.models.backbones.swin_image import SwinImageBackbone
from rvos.models.backbones.timm_image import TimmImageBackbone
from rvos.models.backbones.video_swin import VideoSwinBackbone
from rvos.models.layers.attention import MLP
from rvos.models.meta.base import RvosModel, TextInputs
from rvos.models.modules.deform_pixel_decoder import input_projection
from rvos.models.modules.deformable_transformer import DeformableTransformer
from rvos.models.modules.proposals import clip_centre_loss, peak_references

log = logging.getLogger(__name__)


@dataclass
class TextConfig:
    model: str = "roberta-base"  # transformers model: a folder, a bundled name, or a Hugging Face repo id
    pretrained: bool = True  # false: random weights (trained from scratch, or loaded from a whole checkpoint)
    frozen: bool = True  # the main training freezes it; image pre-training trains it (lr x text_lr_mult)
    max_tokens: int = 512  # the official tokenizer pads to the longest sentence and never truncates
    cache_dir: str | None = None


@dataclass
class BackboneConfig:
    # "video_swin" (torchvision's Swin3D), "swin" (the original image Swin, per frame: the official swin_*_p4w7) or
    # "timm" (Swin, ResNet, ... per frame)
    kind: str = "video_swin"
    variant: str = "t"  # video Swin: t, s or b (or xs, a CPU size); Swin: t, s, b or l
    # a custom (video) Swin's sizes, each replacing the variant's (null: the variant's)
    embed_dim: int | None = None
    depths: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    patch_time: int = 1  # frames per temporal patch (1: per-frame features, as SgMg and MUTR use it)
    window: tuple[int, int, int] = (8, 7, 7)  # video Swin: (time, height, width); Swin: its last entry
    drop_path: float = 0.2
    timm_model: str = "swin_tiny_patch4_window7_224"  # kind timm: the model name
    timm_out_indices: tuple[int, ...] = (0, 1, 2, 3)  # its stages at strides 4..32 ((1, 2, 3, 4) for a ResNet)
    pretrained: str | None = None  # a local weights file (or "timm" for timm's default weights); null: random
    frozen: bool = False

    def __post_init__(self):
        if self.kind not in ("video_swin", "swin", "timm"):
            raise ValueError(f"model.backbone.kind: expected video_swin, swin or timm, got {self.kind!r}")


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
    if cfg.kind == "swin":
        return SwinImageBackbone(cfg.variant, cfg.pretrained, cfg.window[-1], cfg.drop_path, cfg.frozen, cfg.embed_dim,
                                 cfg.depths, cfg.heads)
    # timm's Swin checks the input against its training size unless told to build its masks per input
    kwargs = {"dynamic_img_size": True} if cfg.timm_model.startswith("swin") else {}
    return TimmImageBackbone(cfg.timm_model, cfg.pretrained, tuple(cfg.timm_out_indices), frozen=cfg.frozen, **kwargs)


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


class ReferFormerParts(RvosModel):
    """The parts SgMg and MUTR build alike, under the official names: the text encoder, the image backbone (maps at
    strides 4, 8, 16, 32), the input projections of ``levels`` levels, the deformable transformer, the learned
    query positions and the per-layer class and box heads (Deformable DETR's initialisation). A subclass sets
    ``method`` (its name in errors) and ``proposals`` (its ``ProposalHead``, or None), and builds the rest."""

    method = "this method"
    size_divisibility = 1  # the model pads (with padding masks) itself

    def build_parts(self, cfg) -> None:
        c, t, x = cfg.hidden_dim, cfg.text, cfg.transformer
        self.text_encoder = HFTextEncoder(t.model, t.pretrained, t.frozen, t.max_tokens, t.cache_dir)
        self.backbone = build_backbone(cfg.backbone)
        if list(self.backbone.strides[:4]) != [4, 8, 16, 32]:
            raise ConfigError(f"{self.method} needs backbone maps at strides 4, 8, 16, 32; the backbone gives "
                              f"{self.backbone.strides} (for timm, choose them with model.backbone.timm_out_indices)")
        channels = self.backbone.channels
        self.input_proj = nn.ModuleList()
        for level in range(cfg.levels):  # strides 8, 16, 32 by 1x1 convs; stride 64 by a 3x3 stride-2 conv
            conv = nn.Conv2d(channels[level + 1], c, 1) if level < 3 else nn.Conv2d(channels[3], c, 3, 2, padding=1)
            self.input_proj.append(input_projection(conv, 32))
        self.transformer = DeformableTransformer(c, x.heads, x.enc_layers, x.dec_layers, x.ffn, x.dropout, cfg.levels,
                                                 x.enc_points, x.dec_points)
        self.query_embed = nn.Embedding(cfg.queries, c)
        self.class_embed = nn.ModuleList(nn.Linear(c, 1) for _ in range(x.dec_layers))
        self.bbox_embed = nn.ModuleList(MLP(c, c, 4, 3) for _ in range(x.dec_layers))
        for cls, box in zip(self.class_embed, self.bbox_embed):
            nn.init.constant_(cls.bias, -math.log((1 - 0.01) / 0.01))  # prior probability 0.01
            nn.init.zeros_(box.layers[-1].weight)
            nn.init.zeros_(box.layers[-1].bias)
        nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)

    def prepare_text(self, sentences: list[str]) -> TextInputs:
        return self.text_encoder.tokenize(sentences)

    def pad_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (N, 3, H, W) -> (the frames padded at the bottom and right to ``cfg.size_divisibility``, their
        padding mask (N, H', W'), True on padding), as the official models read them."""
        h, w = frames.shape[-2:]
        d = self.cfg.size_divisibility
        images = F.pad(frames, (0, (d - w % d) % d, 0, (d - h % d) % d))
        padding = torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool, device=images.device)
        padding[:, :h, :w] = False
        return images, padding

    def padded_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return self.pad_frames(frames)[0]

    @staticmethod
    def level_padding(padding: torch.Tensor, size) -> torch.Tensor:
        """The padding mask (N, H', W') at a feature level's size (nearest), as the official models resize it."""
        return F.interpolate(padding[None].float(), size=size)[0].bool()

    def start_queries(self, tgt: torch.Tensor, features: torch.Tensor | None, ratios: torch.Tensor):
        """Each map's query content tgt (N, Q, C), the map the proposals read (N, D, h, w) and the decoder's valid
        ratios (N, levels, 2) -> the decoder's content, positions and first reference points, and the heatmap logits
        (N, 1, h, w) and its probability at the peaks (N, Q): the learned positions (the official start; the reference
        points, heatmap and peaks None), or with the subclass's ``proposals`` (its ``model.proposals``) the heatmap's
        peaks, content plus the map there (:mod:`rvos.models.modules.proposals`)."""
        if self.proposals is None:
            return tgt, self.query_embed.weight, None, None, None
        objectness, anchors, peaks, content, pos = self.proposals(features)
        return tgt + content, pos, peak_references(anchors, features.shape[-2:], ratios[:, 0]), objectness, peaks

    def centre_loss(self, objectness: torch.Tensor, targets, clip_length: int) -> torch.Tensor:
        """The proposals' heatmap logits (B * T, 1, h, w), frame order, against the centres of each clip's targets
        (:func:`clip_centre_loss`), weighted by ``loss.centre_weight``."""
        clips = [targets.masks[targets.clips == b] > 0.5 for b in range(objectness.shape[0] // clip_length)]
        return self.cfg.loss.centre_weight * clip_centre_loss(objectness, clips, clip_length)

    def parameter_group(self, name: str) -> str:
        if name.startswith("text_encoder."):
            return "text"
        if name.startswith("backbone."):
            return "backbone"
        return "head"

    def check_threshold(self, score_threshold: float | None) -> None:
        """The top-1 rule has no threshold: say so when one is given rather than ignore it silently."""
        if score_threshold is not None and getattr(self.cfg, "selection", "top1") == "top1":
            log.warning("%s takes the query with the best score (model.selection top1); the score threshold %s is not "
                        "used", self.method, score_threshold)

    @staticmethod
    def layer_losses(per_layer) -> dict:
        """Each decoder layer's loss dict, in layer order -> one dict: the last layer's unsuffixed, the others
        ``_0``, ``_1``, ... (the official naming)."""
        per_layer = list(per_layer)
        losses = {}
        for layer, part in enumerate(per_layer):
            suffix = "" if layer == len(per_layer) - 1 else f"_{layer}"
            losses |= {k + suffix: v for k, v in part.items()}
        return losses
