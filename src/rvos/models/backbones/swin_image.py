"""The original Swin Transformer, detection variant, as a per-frame image backbone: the image Swin of ReferFormer,
SgMg and MUTR (their ``swin_{t,s,b,l}_p4w7``), with the official parameter names, so that their checkpoints load
as they are.

It is :class:`~rvos.models.backbones.mm_swin.MultiModalSwin` without words: each block pads its map to a multiple of
the window before the cyclic shift, as the original code does; timm's Swin shifts first and pads after, which
computes something else whenever a map is not a multiple of the window (the stride-32 map of a 432 x 768 frame,
say), so a released checkpoint gives its outputs only through this module. Each stage's output goes through its own
LayerNorm (``norm{i}``), which a classification checkpoint does not have.

Variants ``t``, ``s``, ``b``, ``l`` (window 7) with the official sizes, or a custom size. Weights (``pretrained``): an
ImageNet classification checkpoint of the original release (``swin_large_patch4_window7_224_22k.pth``, the file
these methods start from), or of timm's layout (``hf-hub:timm/swin_large_patch4_window7_224.ms_in22k``, or a local
file); the classifier and the final norm are left out.
"""

from __future__ import annotations

import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.base import ImageBackbone
from rvos.models.backbones.mm_swin import MultiModalSwin, load_swin_weights

# embed_dim, depths, heads of ReferFormer's swin_{t,s,b,l}_p4w7
VARIANTS = {
    "t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "b": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "l": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}


class SwinImageBackbone(ImageBackbone):
    strides = [4, 8, 16, 32]

    def __init__(self, variant: str = "t", pretrained: str | None = None, window: int = 7, drop_path: float = 0.2,
                 frozen: bool = False, embed_dim: int | None = None, depths: tuple[int, ...] | None = None,
                 heads: tuple[int, ...] | None = None, cache_dir: str | None = None):
        """``embed_dim``, ``depths``, ``heads``: sizes of a custom Swin, each replacing the variant's."""
        super().__init__()
        if variant not in VARIANTS:
            raise CheckpointError(f"unknown Swin variant {variant!r} (known: {', '.join(VARIANTS)})")
        dim, depths, heads = (given or default for given, default in zip((embed_dim, depths, heads), VARIANTS[variant]))
        self.swin = MultiModalSwin(dim, tuple(depths), tuple(heads), window, text_dim=None, drop_path_rate=drop_path)
        if pretrained:
            load_swin_weights(self.swin, pretrained, cache_dir)
        self.channels = list(self.swin.channels)
        self.register_buffer("pixel_mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def forward_image(self, images: torch.Tensor, clip_length: int | None = None) -> list[torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] -> (N, C_i, ceil(H / s_i), ceil(W / s_i)) at strides 4, 8, 16, 32."""
        return self.swin((images - self.pixel_mean) / self.pixel_std)
