"""The official DsHmp checkpoint (``heshuting555/DsHmp``) -> rvos's DsHmp modules.

Rules for each part of the official state dict, relative to that part (the official prefix is stripped by the
caller): ``vita_module.`` -> :class:`rvos.models.modules.motion_decoder.MotionDecoder`.
"""

from __future__ import annotations

from rvos.models.convert.rules import Rule

MOTION_DECODER: list[Rule] = [
    (r"^enc_self_attn\.(\d+)\.self_attn\.", r"hmp.self_attn.\1.attn."),
    (r"^enc_self_attn\.(\d+)\.norm\.", r"hmp.self_attn.\1.norm."),
    (r"^hierarchical_cross\.", "hmp.cross."),
    (r"^enc_ffn\.", "hmp.ffn."),
    (r"^transformer_self_attention_layers\.(\d+)\.self_attn\.", r"self_attn.\1.attn."),
    (r"^transformer_self_attention_layers\.(\d+)\.norm\.", r"self_attn.\1.norm."),
    (r"^transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"frame_attn.\1.attn."),
    (r"^transformer_cross_attention_layers\.(\d+)\.norm\.", r"frame_attn.\1.norm."),
    (r"^cross_test\.(\d+)\.multihead_attn\.", r"text_attn.\1.attn."),
    (r"^cross_test\.(\d+)\.norm\.", r"text_attn.\1.norm."),
    (r"^transformer_ffn_layers\.", "ffn."),
    (r"^cross_motion\.multihead_attn\.", "cross_motion.attn."),
    (r"^(input_proj_dec|fusion_layers|query_feat|query_embed|fq_pos|cross_motion\.norm|decoder_norm|class_embed"
     r"|mask_embed|sim_embed_frame|sim_embed_clip|contrastive_embed|vita_mask_features)\b", r"\1"),
]
