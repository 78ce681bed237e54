"""The official SgMg checkpoint (``bo-miao/SgMg``) -> rvos's :class:`~rvos.models.meta.sgmg.SgMgModel`.

The official model's parts keep their names in rvos (input projections, spectrum modules, fusion, deformable
transformer, class and box heads, segment-and-optimize) except three: the video Swin (``backbone.0.body.``, the
MTTR wrapper of the original release, renamed to torchvision's layout by
:data:`~rvos.models.backbones.video_swin.ORIGINAL_LAYOUT`), RoBERTa (``text_encoder.text_backbone.``) and the dynamic
head's controller (``controller.``). The box heads the official decoder also registers (``transformer.decoder.
bbox_embed``, the same modules as ``bbox_embed``) are dropped.
"""

from __future__ import annotations

import torch

from rvos.models.backbones.video_swin import ORIGINAL_LAYOUT
from rvos.models.convert.rules import Rule, check_shared, convert, within

CONFIG = "sgmg_video_swin_b_ytvos"  # the config of the released Ref-YouTube-VOS checkpoint

CHECKPOINT: list[Rule] = [
    (r"^backbone\.0\.body\.norm\.", None),  # the release's final norm, never applied by the wrapper
    *within("backbone.0.body.", "backbone.body.", ORIGINAL_LAYOUT),
    (r"^text_encoder\.text_backbone\.embeddings\.position_ids$", None),  # a buffer older transformers versions saved
    *within("text_encoder.text_backbone.", "text_encoder.model.", [(r"^", "")]),
    *within("controller.", "mask_head.controller.", [(r"^", "")]),
    (r"^transformer\.decoder\.bbox_embed\.", None),
    (r"^(text_proj|sentence_proj|fusion_module|query_embed|input_proj|input_fft|input_fft_post|transformer"
     r"|class_embed|bbox_embed|mask_refine)\.", r"\1."),
]


def convert_checkpoint(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint") -> dict:
    """The official state dict as ``model``'s, strictly (every key used, none missing, shapes checked)."""
    check_shared(state, "transformer.decoder.bbox_embed.", "bbox_embed.", source, "SgMg")
    return convert(state, CHECKPOINT, model, source)
