"""A multi-modal Swin Transformer (LAVT, as DsHmp's backbone): Swin stages with pixel-word attention after each.

The Swin layers are the original Swin Transformer's (detection variant): each block pads its map to a multiple of
the window size *before* the cyclic shift, and the shifted-window mask is built on the padded map. timm's Swin
(``SwinTransformerBlock._attn`` in timm 1.0) rolls the map first and pads it after, which is another computation
whenever a map is not a multiple of the window (the stride-32 map of a 448 x 796 frame, say), so this module keeps
the original order: released checkpoints then give their outputs at any frame size.

Without words (``text_dim=None``) it is the original Swin detection backbone itself, the image Swin of ReferFormer,
SgMg and MUTR (:class:`rvos.models.backbones.swin_image.SwinImageBackbone`): stage i's map after its blocks, through
``norm{i}``, is its feature, and goes on to the patch merging unchanged.

After the blocks of stage i, :class:`rvos.models.layers.pwam.PWAM` fuses the sentence's words into the map;
the fused map, through the stage's output LayerNorm ``norm{i}``, is the stage's feature, and the map plus the
tanh-gated fused map (the gate initialised at zero) goes on to the patch merging of the next stage. Parameter
names are the official ones (``patch_embed``, ``layers.{i}.blocks.{j}``, ``layers.{i}.fusion``,
``layers.{i}.res_gate``, ``layers.{i}.downsample``, ``norm{i}``).

:func:`load_swin_weights` starts the Swin layers from an ImageNet classification checkpoint (the original Swin
release, or timm's layout of the same weights, as on the Hugging Face hub), as the official model starts from
Swin-T; the fusion layers, their gates and the stage output norms keep their initialisation.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from rvos.errors import CheckpointError
from rvos.models.backbones.weights import hub_file, read_state_dict
from rvos.models.layers.pwam import PWAM


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    b = windows.shape[0] // ((h // ws) * (w // ws))
    return windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.heads, self.window = heads, window
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B * nW, N, C); mask (nW, N, N) additive (0 / -100) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(-1, self.heads, n, n)
        x = (self.attn_drop(attn.softmax(-1)) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1, self.act, self.fc2, self.drop = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        """x (B, H*W, C); mask: the shifted-window mask of the padded map (used when this block shifts)."""
        b, _, c = x.shape
        ws = self.window
        y = F.pad(self.norm1(x).view(b, h, w, c), (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = y.shape[1:3]
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, ws), mask if self.shift else None), ws, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w].reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int = 4, in_chans: int = 3, dim: int = 96):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, H/4, W/4), the input padded at the right / bottom to a multiple of the patch."""
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (self.patch - w % self.patch) % self.patch, 0, (self.patch - h % self.patch) % self.patch))
        x = self.proj(x)
        return self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view_as(x)


def shift_mask(h: int, w: int, window: int, shift: int, device) -> torch.Tensor:
    """The shifted-window attention mask of a map padded to (Hp, Wp): (nW, ws*ws, ws*ws), -100 between tokens
    from different regions of the rolled map."""
    hp, wp = -(-h // window) * window, -(-w // window) * window
    regions = torch.zeros(1, hp, wp, 1, device=device)
    count = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            regions[:, hs, ws] = count
            count += 1
    windows = window_partition(regions, window)[..., 0]  # (nW, ws*ws)
    diff = windows[:, None, :] - windows[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class MMStage(nn.Module):
    """Swin blocks, the fusion with the words, and (but in the last stage) the gate and the patch merging."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, text_dim: int | None, downsample: bool,
                 drop_path: list[float], fusion_heads: int = 1, fusion_drop: float = 0.0, mlp_ratio: float = 4.0):
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio,
                                              drop_path=drop_path[i]) for i in range(depth))
        self.fusion = PWAM(dim, text_dim, fusion_heads, fusion_drop) if text_dim is not None else None
        self.downsample = PatchMerging(dim) if downsample else None
        if downsample and self.fusion is not None:
            self.res_gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False),
                                          nn.Tanh())
            nn.init.zeros_(self.res_gate[0].weight)
            nn.init.zeros_(self.res_gate[2].weight)

    def forward(self, x: torch.Tensor, h: int, w: int, words: torch.Tensor, padding: torch.Tensor | None):
        """-> (fused map (B, H*W, C), the next stage's input or None, its (H, W))."""
        mask = shift_mask(h, w, self.window, self.shift, x.device)
        for block in self.blocks:
            x = block(x, h, w, mask)
        fused = self.fusion(x, words, padding) if self.fusion is not None else x
        if self.downsample is None:
            return fused, None, (h, w)
        if self.fusion is not None:
            x = x + self.res_gate(fused) * fused
        return fused, self.downsample(x, h, w), ((h + 1) // 2, (w + 1) // 2)


class MultiModalSwin(nn.Module):
    """Images (B, 3, H, W) normalised, words (B, L, text_dim) -> features at strides 4, 8, 16, 32; with
    ``text_dim=None`` the plain Swin, which takes no words."""

    def __init__(self, embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
                 heads: tuple[int, ...] = (3, 6, 12, 24), window: int = 7, text_dim: int | None = 768,
                 drop_path_rate: float = 0.3, fusion_heads: tuple[int, ...] = (1, 1, 1, 1), mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(4, 3, embed_dim)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.channels = [embed_dim * 2 ** i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            MMStage(self.channels[i], depths[i], heads[i], window, text_dim, i < len(depths) - 1,
                    rates[sum(depths[:i]):sum(depths[:i + 1])], fusion_heads[i], mlp_ratio=mlp_ratio)
            for i in range(len(depths)))
        for i, c in enumerate(self.channels):
            setattr(self, f"norm{i}", nn.LayerNorm(c))

    def forward(self, images: torch.Tensor, words: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> list[torch.Tensor]:
        x = self.patch_embed(images)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        outs = []
        for i, stage in enumerate(self.layers):
            fused, x, (nh, nw) = stage(x, h, w, words, padding)
            out = getattr(self, f"norm{i}")(fused)
            outs.append(out.view(-1, h, w, self.channels[i]).permute(0, 3, 1, 2).contiguous())
            h, w = nh, nw
        return outs


def _added_by_fusion(key: str) -> bool:
    """Weights a classification Swin does not have: the word fusion, its gate, the stage output norms."""
    return ".fusion." in key or ".res_gate." in key or re.match(r"norm\d", key) is not None


def load_swin_weights(swin: MultiModalSwin, source: str, cache_dir: str | None = None) -> None:
    """Load ImageNet Swin weights into ``swin``'s Swin layers. ``source``: a local checkpoint file, or
    ``hf-hub:org/repo`` (e.g. ``hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k``). The original release puts
    a stage's patch merging at its end (``layers.{i}.downsample``, as here), timm at the next stage's start
    (``layers.{i+1}.downsample``); both are read. The classifier and the final norm are left out; every Swin
    weight of ``swin`` must be there (the relative position index is derived, so it may be absent)."""
    if source.startswith("hf-hub:"):
        path = hub_file(source[len("hf-hub:"):], ("model.safetensors", "pytorch_model.bin"), cache_dir, "Swin weights")
    else:
        path = Path(source).expanduser()
    state = {k: v for k, v in read_state_dict(path).items()
             if not k.startswith(("head.", "norm.")) and not k.endswith("attn_mask")}
    if f"layers.{len(swin.layers) - 1}.downsample.reduction.weight" in state:  # timm: merging starts a stage
        state = {re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k): v
                 for k, v in state.items()}
    own = swin.state_dict()
    needed = {k for k in own if not _added_by_fusion(k) and not k.endswith("relative_position_index")}
    missing = sorted(needed - state.keys())
    unexpected = sorted(k for k in state if k not in own or _added_by_fusion(k))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(state.keys() & own.keys())
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        problems = [f"{len(missing)} missing (e.g. {missing[:3]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})"] if unexpected else []
        problems += [f"{len(shapes)} with another shape (e.g. {shapes[:2]})"] if shapes else []
        raise CheckpointError(f"{path} does not hold this Swin's weights: " + "; ".join(problems)
                              + ". Is it a Swin classification checkpoint of the config's size?")
    swin.load_state_dict(state, strict=False)
