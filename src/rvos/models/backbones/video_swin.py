"""Video Swin Transformer (torchvision's ``SwinTransformer3d``) as a multi-scale image backbone for clips: the
outputs of its four stages, at strides 4, 8, 16, 32 in space. Attention windows span frames, so the features of
a frame depend on the clip's other frames (``temporal = True``).

Variants ``t``, ``s``, ``b`` with torchvision's hyperparameters (and ``xs``, a CPU size); ``patch_time`` is the temporal patch size (1
keeps every frame, as ReferFormer and SgMg use it; torchvision's Kinetics models use 2). Weights: ``null``
(random) or a local file holding either torchvision's ``SwinTransformer3d`` state dict (its Kinetics-400 files)
or the original Video Swin release's (``swin_tiny_patch244_window877_kinetics400_1k.pth`` and the others, the
files ReferFormer, SgMg and MUTR start from), renamed by :data:`ORIGINAL_LAYOUT`. As those methods do, a patch
embedding of 2 frames is summed over time when ``patch_time`` is 1. The classification head and the final norm
are not part of the backbone (its outputs are the stages' own), and are ignored in a weights file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.video.swin_transformer import SwinTransformer3d

from rvos.errors import CheckpointError
from rvos.models.backbones.base import ImageBackbone
from rvos.models.backbones.weights import load_strict, read_state_dict
from rvos.models.convert.rules import Rule, rename

# The original Video Swin layout (and the MTTR / ReferFormer / SgMg wrapper, which keeps each stage's patch merging
# in ``downsamples``) -> torchvision's: stage i is features.2i, the patch merging after it features.2i+1.
ORIGINAL_LAYOUT: list[Rule] = [
    (r"^patch_embed\.", "patch_embed."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.", lambda m: f"features.{2 * int(m[1])}.{m[2]}.mlp.0."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.", lambda m: f"features.{2 * int(m[1])}.{m[2]}.mlp.3."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.", lambda m: f"features.{2 * int(m[1])}.{m[2]}."),
    (r"^(?:layers|downsamples)\.(\d+)\.(?:downsample\.)?", lambda m: f"features.{2 * int(m[1]) + 1}."),
]


def backbone_state(state: dict[str, torch.Tensor], body: torch.nn.Module, patch_time: int) -> dict[str, torch.Tensor]:
    """A weights file's state dict (either layout) as ``body``'s: head and final norm left out, the original layout
    renamed, a 2-frame patch embedding summed over time for ``patch_time`` 1, and relative position indices (a
    function of the window size, not weights) taken from ``body`` where the file has none."""
    if any(k.startswith("backbone.") for k in state):  # the original release wraps the backbone of a classifier
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k: v for k, v in state.items() if not k.startswith(("norm.", "head.", "cls_head."))}
    if any(k.startswith(("layers.", "downsamples.")) for k in state):
        state = rename(state, ORIGINAL_LAYOUT, "the Video Swin weights")
    embed = state.get("patch_embed.proj.weight")
    if embed is not None and embed.shape[2] != patch_time and patch_time == 1:
        state["patch_embed.proj.weight"] = embed.sum(2, keepdim=True)
    for key, value in body.state_dict().items():
        if key.endswith("relative_position_index"):
            state.setdefault(key, value)
    return state

VARIANTS = {  # embed_dim, depths, heads (torchvision's swin3d_t / _s / _b)
    "t": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "s": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "b": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "xs": (32, (1, 1, 2, 1), (1, 2, 4, 8)),  # rvos's CPU size for the synthetic benchmark (no released weights)
}


class VideoSwinBackbone(ImageBackbone):
    temporal = True
    strides = [4, 8, 16, 32]

    def __init__(self, variant: str = "t", pretrained: str | None = None, patch_time: int = 1,
                 window: tuple[int, int, int] = (8, 7, 7), drop_path: float = 0.1, frozen: bool = False,
                 embed_dim: int | None = None, depths: tuple[int, ...] | None = None,
                 heads: tuple[int, ...] | None = None):
        """``embed_dim``, ``depths``, ``heads``: sizes of a custom video Swin, each replacing the variant's."""
        super().__init__()
        if variant not in VARIANTS:
            raise CheckpointError(f"unknown video Swin variant {variant!r} (known: {', '.join(VARIANTS)})")
        dim, depths, heads = (given or default for given, default in zip((embed_dim, depths, heads), VARIANTS[variant]))
        self.body = SwinTransformer3d(patch_size=[patch_time, 4, 4], embed_dim=dim, depths=list(depths),
                                      num_heads=list(heads), window_size=list(window), stochastic_depth_prob=drop_path)
        self.body.norm = self.body.head = torch.nn.Identity()  # the stages' outputs are the features
        if pretrained:
            path = Path(pretrained).expanduser()
            state = backbone_state(read_state_dict(path), self.body, patch_time)
            load_strict(self.body, state, path, f"video Swin-{variant.upper()}")
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
