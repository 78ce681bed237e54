"""Mask2Former's modules in official checkpoints (detectron2 names) -> rvos's.

``PIXEL_DECODER``: ``sem_seg_head.pixel_decoder.`` (``MSDeformAttnPixelDecoder``) ->
:class:`rvos.models.modules.deform_pixel_decoder.MSDeformPixelDecoder`. detectron2's ``Conv2d`` keeps its norm
inside (``adapter_1.norm``); rvos stores convolution and norm as a ``Sequential`` (``lateral.0.0``,
``lateral.0.1``); ``adapter_k`` / ``layer_k`` are the k-th FPN level from fine to coarse.
"""

from __future__ import annotations

from rvos.models.convert.rules import Rule


def _fpn(name: str):
    return lambda m: f"{name}.{int(m[1]) - 1}.{1 if m[2] else 0}."


PIXEL_DECODER: list[Rule] = [
    (r"^transformer\.level_embed$", "level_embed"),
    (r"^transformer\.encoder\.layers\.", "layers."),
    (r"^adapter_(\d+)\.(norm\.)?", _fpn("lateral")),
    (r"^layer_(\d+)\.(norm\.)?", _fpn("output")),
    (r"^(input_proj|mask_features)\b", r"\1"),
]
