"""The official MUTR checkpoint (``OpenGVLab/MUTR``) -> rvos's :class:`~rvos.models.meta.mutr.MutrModel`.

Most parts keep their official names (input projections, word fusion, deformable transformer, class and box heads,
the cross-modal FPN's attention blocks). Renamed: the video Swin (``backbone.0.body.``, the MTTR wrapper of the
original release, to torchvision's layout by :data:`~rvos.models.backbones.video_swin.ORIGINAL_LAYOUT`), RoBERTa
(``text_encoder.`` -> ``text_encoder.model.``), MTA's one layer (``MTA.layers.0.``), the FPN's detectron2-style
convolutions (``weight`` and ``norm`` -> a convolution and a GroupNorm), the dynamic head's controller, and MTI's
VITA-style layers. The box heads the official decoder also registers (``transformer.decoder.bbox_embed``) are
dropped after checking that they are the model's own.
"""

from __future__ import annotations

import torch

from rvos.models.backbones.video_swin import ORIGINAL_LAYOUT
from rvos.models.convert.rules import Rule, check_shared, convert, within

CONFIG = "mutr_video_swin_b_ytvos"  # the config of the released Ref-YouTube-VOS checkpoints

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

CHECKPOINT: list[Rule] = [
    (r"^backbone\.0\.body\.norm\.", None),  # the release's final norm, never applied by the wrapper
    *within("backbone.0.body.", "backbone.body.", ORIGINAL_LAYOUT),
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


def convert_checkpoint(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint") -> dict:
    """The official state dict as ``model``'s, strictly (every key used, none missing, shapes checked)."""
    check_shared(state, "transformer.decoder.bbox_embed.", "bbox_embed.", source, "MUTR")
    return convert(state, CHECKPOINT, model, source)
