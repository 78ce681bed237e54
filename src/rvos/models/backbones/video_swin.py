"""Video Swin Transformer (torchvision's ``SwinTransformer3d``) as a multi-scale image backbone for clips: the
outputs of its four stages, at strides 4, 8, 16, 32 in space. Attention windows span frames, so the features of
a frame depend on the clip's other frames (``temporal = True``).

Variants ``t``, ``s``, ``b`` with torchvision's hyperparameters; ``patch_time`` is the temporal patch size (1
keeps every frame, as ReferFormer and SgMg use it; torchvision's Kinetics models use 2). Weights: ``null``
(random) or a local file holding the ``SwinTransformer3d`` state dict (torchvision's Kinetics-400 files, or a
converted one).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.video.swin_transformer import SwinTransformer3d

from rvos.errors import CheckpointError
from rvos.models.backbones.base import ImageBackbone
from rvos.models.backbones.weights import load_strict, read_state_dict

VARIANTS = {  # embed_dim, depths, heads (torchvision's swin3d_t / _s / _b)
    "t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "b": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}


class VideoSwinBackbone(ImageBackbone):
    temporal = True
    strides = [4, 8, 16, 32]

    def __init__(self, variant: str = "t", pretrained: str | None = None, patch_time: int = 1,
                 window: tuple[int, int, int] = (8, 7, 7), drop_path: float = 0.1, frozen: bool = False):
        super().__init__()
        if variant not in VARIANTS:
            raise CheckpointError(f"unknown video Swin variant {variant!r} (known: {', '.join(VARIANTS)})")
        dim, depths, heads = VARIANTS[variant]
        self.body = SwinTransformer3d(patch_size=[patch_time, 4, 4], embed_dim=dim, depths=list(depths),
                                      num_heads=list(heads), window_size=list(window), stochastic_depth_prob=drop_path)
        if pretrained:
            path = Path(pretrained).expanduser()
            load_strict(self.body, read_state_dict(path), path, f"video Swin-{variant.upper()}")
        self.patch_time = patch_time
        self.channels = [dim * 2**i for i in range(4)]
        self.register_buffer("pixel_mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1, 1), persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def forward_image(self, images: torch.Tensor, clip_length: int | None = None) -> list[torch.Tensor]:
        """images (B * T, 3, H, W) -> per frame (B * T / patch_time, C_i, H / s_i, W / s_i)."""
        t_len = clip_length or images.shape[0]
        x = images.view(-1, t_len, *images.shape[1:]).transpose(1, 2)  # (B, 3, T, H, W)
        x = self.body.pos_drop(self.body.patch_embed((x - self.pixel_mean) / self.pixel_std))  # (B, T', H', W', C)
        feats = []
        for layer in self.body.features:
            if isinstance(layer, torch.nn.Sequential):  # a stage (the others merge patches)
                x = layer(x)
                feats.append(x.flatten(0, 1).permute(0, 3, 1, 2).contiguous())
            else:
                x = layer(x)
        return feats
