"""DsHmp's multi-modal Swin against the official one: numbers in ``fixtures/dshmp_mm_swin_official.safetensors``
(random weights of a reduced configuration, a 44 x 60 frame so that no map is a multiple of the window, padded
words), made by tests/fixtures/make_dshmp_mm_swin.py."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from rvos.models.backbones.mm_swin import MultiModalSwin

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_mm_swin_official.safetensors"


def test_matches_the_official_backbone():
    t = load_file(FIXTURE)
    swin = MultiModalSwin(embed_dim=4, depths=(2, 2, 2, 2), heads=(1, 1, 2, 2), window=4, text_dim=24,
                          mlp_ratio=2.0).eval()
    swin.load_state_dict({k: v for k, v in t.items() if not k.startswith(("input.", "output."))}, strict=True)
    with torch.no_grad():
        outs = swin(t["input.images"], t["input.words"].transpose(1, 2), t["input.mask"][..., 0] == 0)
    for i, out in enumerate(outs):
        torch.testing.assert_close(out, t[f"output.res{i + 2}"], atol=1e-5, rtol=1e-5)


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
