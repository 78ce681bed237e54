"""The official DsHmp checkpoint (``heshuting555/DsHmp``) -> rvos's DsHmp modules.

Rules for each part of the official state dict, relative to that part (the official prefix is stripped by the
caller): ``vita_module.`` -> :class:`rvos.models.modules.motion_decoder.MotionDecoder`,
``sem_seg_head.predictor.`` -> :class:`rvos.models.modules.static_query_decoder.StaticQueryDecoder` (whose old
checkpoints name ``query_feat`` ``static_query``, as the official loader renames it).
"""

from __future__ import annotations

from rvos.models.convert.rules import Rule

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
