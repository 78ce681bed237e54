"""DsHmp's multi-modal Swin against the official one: numbers in ``fixtures/dshmp_mm_swin_official.safetensors``
(random weights of a reduced configuration, a 44 x 60 frame so that no map is a multiple of the window, padded
words), made by tests/fixtures/make_dshmp_mm_swin.py."""

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvos.errors import CheckpointError
from rvos.models.backbones.mm_swin import MultiModalSwin, load_swin_weights

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_mm_swin_official.safetensors"


def test_matches_the_official_backbone():
    t = load_file(FIXTURE)
    swin = MultiModalSwin(embed_dim=4, depths=(2, 2, 2, 2), heads=(1, 1, 2, 2), window=4, text_dim=24,
                          mlp_ratio=2.0).eval()
    swin.load_state_dict({k: v for k, v in t.items() if not k.startswith(("input.", "output."))}, strict=True)
    with torch.no_grad():
        outs = swin(t["input.images"], t["input.words"].transpose(1, 2), t["input.mask"][..., 0] == 0)
    for i, out in enumerate(outs):
        # float32 rounding differs between torch builds and grows stage by stage (torch 2.14.1's registry wheel on
        # this CPU: 3e-5 at res3, 1.2e-4 at res5, on features up to ~3); a wrong operation is off by far more
        torch.testing.assert_close(out, t[f"output.res{i + 2}"], atol=5e-4, rtol=1e-4)


def test_a_new_backbone_starts_as_plain_swin():
    torch.manual_seed(0)
    swin = MultiModalSwin(embed_dim=4, depths=(2, 2), heads=(1, 1), window=4, text_dim=6).eval()
    images, words = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 6)
    with torch.no_grad():
        a = swin(images, words)
        b = swin(images, torch.randn(1, 3, 6))
    # the zero-initialised gates keep the words out of the next stage: the second stage's blocks see the same input
    # whatever the sentence; only the fused outputs differ
    stage0 = swin.layers[0]
    x = swin.patch_embed(images).flatten(2).transpose(1, 2)
    with torch.no_grad():
        _, passed_a, _ = stage0(x, 8, 8, words, None)
        _, passed_b, _ = stage0(x, 8, 8, torch.randn(1, 3, 6), None)
    torch.testing.assert_close(passed_a, passed_b)
    assert not torch.allclose(a[0], b[0])


@pytest.mark.parametrize("layout", ["timm", "original"])
def test_imagenet_swin_weights_load_into_the_swin_layers(tmp_path, layout):
    """timm's Swin (the hub's layout) and the original release's (patch merging at a stage's end): the Swin layers
    then compute what timm's do; the fusion layers keep their initialisation."""
    import timm

    kw = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=2, img_size=128)
    ref = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **kw).eval()
    expected = []
    for stage in ref.layers:  # NHWC outputs of each stage
        stage.register_forward_hook(lambda mod, args, out: expected.append(out))
    state = ref.state_dict()
    if layout == "original":
        state = {re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k): v
                 for k, v in state.items()}
    torch.save({"model": state}, tmp_path / "swin.pth")
    swin = MultiModalSwin(embed_dim=8, depths=(2, 2, 2, 2), heads=(1, 1, 2, 2), window=2, text_dim=6).eval()
    fusion = {k: v.clone() for k, v in swin.state_dict().items() if ".fusion." in k}
    load_swin_weights(swin, str(tmp_path / "swin.pth"))
    assert all(torch.equal(v, swin.state_dict()[k]) for k, v in fusion.items())
    seen = []
    for stage in swin.layers:  # what each stage's blocks give, before the fusion
        stage.fusion.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    images = torch.randn(1, 3, 128, 128)  # every map larger than a window: timm shifts the windows in every stage
    with torch.no_grad():
        swin(images, torch.randn(1, 3, 6))
        ref.forward_features(images)
    assert len(seen) == len(expected) == 4
    for x, e in zip(seen, expected):
        torch.testing.assert_close(x, e.flatten(1, 2), atol=1e-5, rtol=1e-5)


def test_swin_weights_of_another_size_are_refused(tmp_path):
    swin = MultiModalSwin(embed_dim=8, depths=(2, 2), heads=(1, 1), window=4, text_dim=6)
    other = MultiModalSwin(embed_dim=4, depths=(2, 2), heads=(1, 1), window=4, text_dim=6)
    torch.save(other.state_dict(), tmp_path / "swin.pth")
    with pytest.raises(CheckpointError, match="another shape"):
        load_swin_weights(swin, str(tmp_path / "swin.pth"))
    torch.save({k: v for k, v in swin.state_dict().items() if "blocks.1" not in k}, tmp_path / "part.pth")
    with pytest.raises(CheckpointError, match="missing"):
        load_swin_weights(swin, str(tmp_path / "part.pth"))
