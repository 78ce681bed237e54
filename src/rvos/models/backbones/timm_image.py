"""Image backbones from timm, through its supported multi-scale API (``features_only``): ResNet, ConvNeXt,
Swin and any other timm model with feature info.

Weights (``pretrained``): ``null`` (random), a local file (``.safetensors``, ``.pth``, ``.bin``: the timm model's
own state dict), or ``timm`` for the model's default pretrained weights from the Hugging Face cache (downloaded
into it when online).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.base import ImageBackbone
from rvos.models.backbones.weights import load_strict, read_state_dict


class TimmImageBackbone(ImageBackbone):
    def __init__(self, model: str, pretrained: str | None = None, out_indices: tuple[int, ...] = (0, 1, 2, 3),
                 frozen: bool = False, **kwargs):
        super().__init__()
        if model not in timm.list_models():
            raise CheckpointError(f"unknown timm model {model!r} (see timm.list_models())")
        if pretrained and pretrained != "timm":
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise CheckpointError(f"timm weights {path} do not exist (model.*.pretrained: a file, 'timm' for "
                                      "the model's default weights from the Hugging Face cache, or null)")
            # strictly: every tensor of the file is a tensor of the model (timm itself only warns)
            full = timm.create_model(model, pretrained=False, **kwargs)
            load_strict(full, read_state_dict(path), path, f"timm model {model!r}")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        try:
            self.body = timm.create_model(model, pretrained=bool(pretrained), features_only=True,
                                          out_indices=out_indices, **kwargs)
        except (RuntimeError, OSError, ValueError) as exc:
            if not pretrained:
                raise
            where = pretrained if pretrained != "timm" else "its default weights (Hugging Face cache)"
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"timm could not load {where} into {model!r}: {type(exc).__name__}: {reason}. "
                                  "Download the weights and set the backbone's pretrained to the file") from None
        info = self.body.feature_info
        self.channels = list(info.channels())
        self.strides = list(info.reduction())
        cfg = self.body.pretrained_cfg if hasattr(self.body, "pretrained_cfg") else {}
        mean, std = cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def forward_image(self, images: torch.Tensor, clip_length: int | None = None) -> list[torch.Tensor]:
        feats = self.body((images - self.pixel_mean) / self.pixel_std)
        # transformer trunks (Swin) return channels-last maps
        return [f.permute(0, 3, 1, 2).contiguous() if f.shape[1] != c and f.shape[-1] == c else f
                for f, c in zip(feats, self.channels)]

