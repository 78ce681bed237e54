"""The two backbone interfaces methods build on, so that a method names a backbone in its config and never reaches
into a library's internals.

* :class:`ImageBackbone`: ``forward_image(images)`` -> feature maps, with their ``channels`` and ``strides``. A
  video backbone (``temporal = True``) mixes frames, so it is given the clip length.
* :class:`TextEncoder`: ``tokenize(sentences)`` -> :class:`TextInputs`, ``forward_text(inputs)`` ->
  :class:`TextFeatures` (per-word features, padding, a sentence feature).

Adapters: open_clip (:mod:`.clip`, both towers of one model), timm image models through ``features_only``
(:mod:`.timm_image`), torchvision's video Swin (:mod:`.video_swin`), transformers text models such as RoBERTa
(:mod:`.hf_text`). Each loads its weights from a local file or folder, or from the Hugging Face cache, and raises
:class:`~rvos.errors.CheckpointError` saying what to download and where to point the config when it cannot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from rvos.models.meta.base import TextInputs


# sentences whose token ids a text encoder keeps (MeViS has 28,570): a training step reads every sentence of its clips'
# videos, and tokenizing costs CLIP's text cleaning about 0.04 s of a 0.4 s step on the synthetic benchmark, the
# transformers tokenizer 35 ms of DsHmp's 0.14 s loss
TOKEN_CACHE = 1 << 16


class TokenRows(dict):
    """Each sentence's token ids (a 1-d tensor), tokenized once: a track head reads the sentences of a few hundred
    videos every training step. Emptied when ``TOKEN_CACHE`` sentences would be exceeded."""

    def rows(self, sentences: list[str], tokenize) -> list[torch.Tensor]:
        """The ids of ``sentences``; those not kept yet go through ``tokenize`` (distinct sentences -> their rows)."""
        missing = list(dict.fromkeys(s for s in sentences if s not in self))
        if missing:
            if len(self) + len(missing) > TOKEN_CACHE:
                self.clear()
            self.update(zip(missing, tokenize(missing)))
        return [self[s] for s in sentences]


def offline() -> bool:
    """No downloads: ``HF_HUB_OFFLINE=1`` or ``RVOS_OFFLINE=1``."""
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "RVOS_OFFLINE"))


@dataclass
class TextFeatures:
    words: torch.Tensor  # (N, L, width)
    padding: torch.Tensor  # (N, L) bool, True at padding
    sentence: torch.Tensor  # (N, sentence_dim)


class Backbone(nn.Module):
    """A frozen backbone (``self.frozen``) stays in inference mode (drop-path, batch-norm statistics) whatever
    mode its owner is put in."""

    frozen: bool = False

    def train(self, mode: bool = True):
        super().train(mode and not self.frozen)
        return self


class ImageBackbone(Backbone):
    channels: list[int]  # of each returned map
    strides: list[int]  # of each returned map, relative to the input
    temporal: bool = False  # True: features depend on the clip's other frames (video backbones)

    def forward_image(self, images: torch.Tensor, clip_length: int | None = None) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] (N = clips x clip_length for a temporal backbone) -> maps (N, C_i, H_i,
        W_i), finest first."""
        raise NotImplementedError


class TextEncoder(Backbone):
    width: int  # per-word feature size
    sentence_dim: int  # sentence feature size

    def tokenize(self, sentences: list[str]) -> TextInputs:
        raise NotImplementedError

    def forward_text(self, inputs: TextInputs) -> TextFeatures:
        raise NotImplementedError

    def is_text_parameter(self, name: str) -> bool:
        """Whether parameter ``name`` (relative to this module) belongs to the text encoder (for a module that
        holds both towers, such as CLIP)."""
        return True
