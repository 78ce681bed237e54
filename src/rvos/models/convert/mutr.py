"""The official MUTR checkpoint (``OpenGVLab/MUTR``) -> rvos's :class:`~rvos.models.meta.mutr.MutrModel`.

Most parts keep their official names (input projections, word fusion, deformable transformer, class and box heads,
the cross-modal FPN's attention blocks, the image Swin's ``backbone.0.body.`` under ``backbone.swin.``). Renamed: the
video Swin (``backbone.0.body.``, the MTTR wrapper of the original release, to torchvision's layout by
:data:`~rvos.models.backbones.video_swin.ORIGINAL_LAYOUT`), RoBERTa
(``text_encoder.`` -> ``text_encoder.model.``), MTA's one layer (``MTA.layers.0.``), the FPN's detectron2-style
convolutions (``weight`` and ``norm`` -> a convolution and a GroupNorm), the dynamic head's controller, and MTI's
VITA-style layers. The box heads the official decoder also registers (``transformer.decoder.bbox_embed``) are
dropped after checking that they are the model's own.

The released Ref-YouTube-VOS checkpoints have a video Swin T, S or B, or the image Swin-L: :func:`config_for` reads
which from the checkpoint and names the config (with the variant) it converts to.
"""

from __future__ import annotations

import re

import torch

from rvos.errors import ConfigError
from rvos.models.backbones.video_swin import ORIGINAL_LAYOUT
from rvos.models.convert.rules import Rule, check_shared, convert, within

CONFIG = "mutr_video_swin_b_ytvos"  # the config of the released Ref-YouTube-VOS checkpoints with a video Swin
IMAGE_CONFIG = "mutr_swin_l_ytvos"  # the config of the released checkpoint with the image Swin-L
# (embed dim, blocks of stage 3) -> variant, of the video Swins and of the image Swins
VIDEO_VARIANTS = {(96, 6): "t", (96, 18): "s", (128, 18): "b"}
IMAGE_VARIANTS = {(96, 6): "t", (96, 18): "s", (128, 18): "b", (192, 18): "l"}

MTI: list[Rule] = [
    (r"^enc_self_attn\.(\d+)\.self_attn\.", r"encoder.self_attn.\1.attn."),
    (r"^enc_self_attn\.(\d+)\.norm\.", r"encoder.self_attn.\1.norm."),
    (r"^enc_ffn\.", "encoder.ffn."),
    (r"^transformer_self_attention_layers\.(\d+)\.self_attn\.", r"self_attn.\1.attn."),
    (r"^transformer_self_attention_layers\.(\d+)\.norm\.", r"self_attn.\1.norm."),
    (r"^transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"cross_attn.\1.attn."),
    (r"^transformer_cross_attention_layers\.(\d+)\.norm\.", r"cross_attn.\1.norm."),
    (r"^transformer_ffn_layers\.", "ffn."),
    (r"^(fq_pos|query_embed|query_feat|decoder_norm)\.", r"\1."),
]

VIDEO_SWIN: list[Rule] = [
    (r"^backbone\.0\.body\.norm\.", None),  # the release's final norm, never applied by the wrapper
    *within("backbone.0.body.", "backbone.body.", ORIGINAL_LAYOUT),
]
IMAGE_SWIN: list[Rule] = within("backbone.0.body.", "backbone.swin.", [(r"^", "")])

CHECKPOINT: list[Rule] = [
    (r"^text_encoder\.embeddings\.position_ids$", None),  # a buffer older transformers versions saved
    *within("text_encoder.", "text_encoder.model.", [(r"^", "")]),
    (r"^MTA\.layers\.0\.multihead_attn\.", "mta.attn.attn."),
    (r"^MTA\.layers\.0\.norm1\.", "mta.attn.norm."),
    (r"^MTA\.layers\.0\.norm2\.", "mta.ffn.norm."),
    (r"^MTA\.layers\.0\.(linear1|linear2)\.", r"mta.ffn.\1."),
    (r"^pixel_decoder\.(adapter|layer)_(\d)\.weight$", r"pixel_decoder.\1_\2.0.weight"),
    (r"^pixel_decoder\.(adapter|layer)_(\d)\.norm\.", r"pixel_decoder.\1_\2.1."),
    (r"^pixel_decoder\.(mask_features|cross_attn_\d)\.", r"pixel_decoder.\1."),
    *within("controller.", "mask_head.controller.", [(r"^", "")]),
    *within("mti.", "mti.", MTI),
    (r"^transformer\.decoder\.bbox_embed\.", None),
    (r"^(resizer|fusion_module|query_embed|input_proj|transformer|class_embed|bbox_embed)\.", r"\1."),
]


def _image_swin(state: dict[str, torch.Tensor]) -> bool:
    """Whether the checkpoint's backbone is an image Swin (a 2-d patch embedding) rather than a video Swin."""
    embed = state.get("backbone.0.body.patch_embed.proj.weight")
    return embed is not None and embed.ndim == 4


def config_for(state: dict[str, torch.Tensor]) -> tuple[str, list[str]]:
    """(config, overrides) of a released checkpoint: the video Swin config with its variant, or the Swin-L one."""
    embed = state.get("backbone.0.body.patch_embed.proj.weight")
    blocks = {int(m[1]) for k in state if (m := re.match(r"backbone\.0\.body\.layers\.2\.blocks\.(\d+)\.", k))}
    if embed is None or not blocks:
        raise ConfigError("the checkpoint has no Swin backbone (backbone.0.body.patch_embed, layers.2.blocks): a MUTR "
                          "checkpoint with another backbone needs its config, given with --config")
    key = (int(embed.shape[0]), max(blocks) + 1)
    image = _image_swin(state)
    variant = (IMAGE_VARIANTS if image else VIDEO_VARIANTS).get(key)
    if variant is None:
        raise ConfigError(f"a {'image' if image else 'video'} Swin of width {key[0]} with {key[1]} blocks in its third "
                          "stage is not a released size: give the checkpoint's config with --config")
    return (IMAGE_CONFIG if image else CONFIG), [f"model.backbone.variant={variant}"]


def convert_checkpoint(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint") -> dict:
    """The official state dict as ``model``'s, strictly (every key used, none missing, shapes checked)."""
    check_shared(state, "transformer.decoder.bbox_embed.", "bbox_embed.", source, "MUTR")
    return convert(state, (IMAGE_SWIN if _image_swin(state) else VIDEO_SWIN) + CHECKPOINT, model, source)
