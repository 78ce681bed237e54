"""The official DsHmp checkpoint (``heshuting555/DsHmp``) -> rvos's :class:`~rvos.models.meta.dshmp.DsHmpModel`.

Rules for each part of the official state dict, relative to that part: ``vita_module.`` ->
:class:`rvos.models.modules.motion_decoder.MotionDecoder`, ``sem_seg_head.predictor.`` ->
:class:`rvos.models.modules.static_query_decoder.StaticQueryDecoder` (whose old checkpoints name ``query_feat``
``static_query``, as the official loader renames it). :data:`CHECKPOINT` maps the whole official model: those two,
the pixel decoder (:mod:`.mask2former`), the multi-modal Swin (``backbone.``, official names kept), RoBERTa
(``text_encoder.``), the text resizer, and the contrastive memory bank (``vita_criterion.train_memory_bank``);
the official buffers rvos keeps in its config (pixel mean and std, the criteria's no-object weights) are dropped.
"""

from __future__ import annotations

import torch

from rvos.models.convert.mask2former import PIXEL_DECODER
from rvos.models.convert.rules import Rule, convert, within

CONFIG = "dshmp_swin_t_mevis"  # the config of the released checkpoints

# the cross-attention, self-attention and FFN stacks of both decoders (rvos's shared QueryLayerStack)
_STACK: list[Rule] = [
    (r"^transformer_self_attention_layers\.(\d+)\.self_attn\.", r"self_attn.\1.attn."),
    (r"^transformer_self_attention_layers\.(\d+)\.norm\.", r"self_attn.\1.norm."),
    (r"^cross_test\.(\d+)\.multihead_attn\.", r"text_attn.\1.attn."),
    (r"^cross_test\.(\d+)\.norm\.", r"text_attn.\1.norm."),
    (r"^transformer_ffn_layers\.", "ffn."),
]

FRAME_DECODER: list[Rule] = _STACK + [
    (r"^transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"image_attn.\1.attn."),
    (r"^transformer_cross_attention_layers\.(\d+)\.norm\.", r"image_attn.\1.norm."),
    (r"^cross_static\.multihead_attn\.", "cross_static.attn."),
    (r"^static_query\.", "query_feat."),
    (r"^(fusion_layers|query_feat|query_embed|level_embed|input_proj|cross_static\.norm|decoder_norm|class_embed"
     r"|mask_embed)\b", r"\1"),
]

MOTION_DECODER: list[Rule] = _STACK + [
    (r"^enc_self_attn\.(\d+)\.self_attn\.", r"hmp.self_attn.\1.attn."),
    (r"^enc_self_attn\.(\d+)\.norm\.", r"hmp.self_attn.\1.norm."),
    (r"^hierarchical_cross\.", "hmp.cross."),
    (r"^enc_ffn\.", "hmp.ffn."),
    (r"^transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"frame_attn.\1.attn."),
    (r"^transformer_cross_attention_layers\.(\d+)\.norm\.", r"frame_attn.\1.norm."),
    (r"^cross_motion\.multihead_attn\.", "cross_motion.attn."),
    (r"^(input_proj_dec|fusion_layers|query_feat|query_embed|fq_pos|cross_motion\.norm|decoder_norm|class_embed"
     r"|mask_embed|sim_embed_frame|sim_embed_clip|contrastive_embed|vita_mask_features)\b", r"\1"),
]

CHECKPOINT: list[Rule] = [
    *within("backbone.", "backbone.", [(r"^", "")]),
    *within("sem_seg_head.pixel_decoder.", "pixel_decoder.", PIXEL_DECODER),
    *within("sem_seg_head.predictor.", "frame_decoder.", FRAME_DECODER),
    *within("vita_module.", "motion_decoder.", MOTION_DECODER),
    (r"^text_encoder\.embeddings\.position_ids$", None),  # a buffer older transformers versions saved
    *within("text_encoder.", "text_encoder.model.", [(r"^", "")]),
    *within("resizer.", "resizer.", [(r"^", "")]),
    (r"^vita_criterion\.train_memory_bank\.features$", "memory_bank.features"),
    (r"^(pixel_mean|pixel_std|criterion\.empty_weight|vita_criterion\.empty_weight)$", None),
]


def convert_checkpoint(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint") -> dict:
    """The official state dict as ``model``'s, strictly (every key used, none missing, shapes checked)."""
    return convert(state, CHECKPOINT, model, source)
