"""LAVT's pixel-word attention against the official PWAM of DsHmp's multi-modal Swin: numbers in
``fixtures/dshmp_pwam_official.safetensors`` (random weights, 2 heads, a sentence with padded words), made by
tests/fixtures/make_dshmp_pwam.py."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from rvos.models.layers.pwam import PWAM

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_pwam_official.safetensors"


def test_matches_the_official_pwam():
    t = load_file(FIXTURE)
    pwam = PWAM(16, 12, heads=2).eval()
    pwam.load_state_dict({k: v for k, v in t.items() if not k.startswith(("input.", "output"))}, strict=True)
    padding = t["input.mask"][..., 0] == 0
    with torch.no_grad():
        out = pwam(t["input.x"], t["input.words"].transpose(1, 2), padding)
    torch.testing.assert_close(out, t["output"], atol=1e-6, rtol=1e-5)


def test_padded_words_are_ignored():
    torch.manual_seed(0)
    pwam = PWAM(8, 6, heads=2).eval()
    x, words = torch.randn(1, 10, 8), torch.randn(1, 4, 6)
    with torch.no_grad():
        fused = pwam(x, words)
        fused_padded = pwam(x, torch.cat([words, torch.randn(1, 3, 6)], 1), torch.tensor([[False] * 4 + [True] * 3]))
    torch.testing.assert_close(fused_padded, fused, atol=1e-5, rtol=1e-4)
