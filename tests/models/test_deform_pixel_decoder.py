"""Mask2Former's deformable pixel decoder against the official one (as DsHmp ships it): numbers in
``fixtures/mask2former_pixel_decoder_official.safetensors`` (random weights, 4 input maps, the official
deformable attention through its pure-PyTorch reference), made by
tests/fixtures/make_mask2former_pixel_decoder.py; loaded through the converter's rules, strictly."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvos.models.convert.mask2former import PIXEL_DECODER
from rvos.models.convert.rules import convert
from rvos.models.modules.deform_pixel_decoder import MSDeformPixelDecoder

FIXTURE = Path(__file__).parent.parent / "fixtures" / "mask2former_pixel_decoder_official.safetensors"


def test_matches_the_official_pixel_decoder():
    t = load_file(FIXTURE)
    state = {k: v for k, v in t.items() if not k.startswith(("input.", "output."))}
    model = MSDeformPixelDecoder([8, 12, 16, 20], dim=32, mask_dim=24, layers=2, heads=4, points=4, ffn=64).eval()
    model.load_state_dict(convert(state, PIXEL_DECODER, model), strict=True)
    with torch.no_grad():
        mask_features, maps = model([t[f"input.res{i}"] for i in range(2, 6)])
    torch.testing.assert_close(mask_features, t["output.mask_features"], atol=1e-5, rtol=1e-5)
    for i, m in enumerate(maps):
        torch.testing.assert_close(m, t[f"output.map{i}"], atol=1e-5, rtol=1e-5)


def test_needs_more_maps_than_it_encodes():
    with pytest.raises(ValueError, match="more than the 3 encoded"):
        MSDeformPixelDecoder([8, 12, 16], dim=32)
