"""The original image Swin (ReferFormer's, SgMg's and MUTR's ``swin_*_p4w7``) against the official one: numbers in
``fixtures/swin_image_official.safetensors`` (random weights of a reduced configuration, a 62 x 90 frame so that
no map is a multiple of the window), made by tests/fixtures/make_swin_image.py from MUTR's code."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rvos.errors import CheckpointError
from rvos.models.backbones.swin_image import SwinImageBackbone
from rvos.models.modules.referformer import BackboneConfig, build_backbone

FIXTURE = Path(__file__).parent.parent / "fixtures" / "swin_image_official.safetensors"
SIZE = dict(embed_dim=8, depths=(2, 2, 4, 2), heads=(1, 2, 2, 4))


def official():
    t = load_file(FIXTURE)
    weights = {k: v for k, v in t.items() if not k.startswith(("input.", "output."))}
    return weights, t["input.images"], [t[f"output.{i}"] for i in range(4)]


def backbone(**kwargs) -> SwinImageBackbone:
    return SwinImageBackbone("t", window=7, **SIZE, **kwargs).eval()


def test_official_weights_load_by_their_names_and_give_the_official_outputs():
    weights, images, expected = official()
    model = backbone()
    missing, unexpected = model.swin.load_state_dict(weights, strict=False)
    assert not unexpected and missing and all(k.endswith("relative_position_index") for k in missing)
    with torch.no_grad():  # forward_image normalises [0, 1] images as the official transforms do
        outs = model.forward_image(images * model.pixel_std + model.pixel_mean)
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 23), (8, 12), (4, 6), (2, 3)]
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref, atol=2e-4, rtol=1e-4)


def test_an_imagenet_checkpoint_of_either_layout_starts_the_swin(tmp_path):
    weights, _, _ = official()
    # a classification checkpoint: no per-stage norms, a final norm and a classifier instead
    original = {k: v for k, v in weights.items() if not re.match(r"norm\d", k)}
    original |= {"norm.weight": torch.ones(64), "norm.bias": torch.zeros(64), "head.weight": torch.zeros(5, 64)}
    # timm's layout: a stage's patch merging opens the next stage
    timm = {re.sub(r"^layers\.(\d)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", k): v
            for k, v in original.items()}
    for name, state in (("original", original), ("timm", timm)):
        save_file(state, tmp_path / f"{name}.safetensors")
        model = backbone(pretrained=str(tmp_path / f"{name}.safetensors"))
        torch.testing.assert_close(model.swin.layers[2].downsample.reduction.weight,
                                   weights["layers.2.downsample.reduction.weight"])
        torch.testing.assert_close(model.swin.layers[3].blocks[1].mlp.fc2.weight,
                                   weights["layers.3.blocks.1.mlp.fc2.weight"])
    save_file({k: v for k, v in original.items() if "layers.2." not in k}, tmp_path / "short.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        backbone(pretrained=str(tmp_path / "short.safetensors"))


def test_the_config_builds_it_with_the_official_sizes():
    swin = build_backbone(BackboneConfig(kind="swin", variant="t", drop_path=0.2))
    assert isinstance(swin, SwinImageBackbone) and swin.channels == [96, 192, 384, 768] and swin.strides == [4, 8, 16, 32]
    with pytest.raises(CheckpointError, match="unknown Swin variant"):
        SwinImageBackbone("xl")
