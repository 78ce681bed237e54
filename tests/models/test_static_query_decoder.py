"""DsHmp's frame decoder against the official ``DshmpMultiScaleMaskedTransformerDecoder``: numbers in
``fixtures/dshmp_frame_decoder_official.safetensors`` (random weights of a reduced configuration, 2 frames, input
projections, padded words, dropouts off), made by tests/fixtures/make_dshmp_frame_decoder.py; loaded through the
converter's rules, strictly."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvos.models.convert.dshmp import FRAME_DECODER
from rvos.models.convert.rules import convert
from rvos.models.modules.static_query_decoder import StaticQueryDecoder

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_frame_decoder_official.safetensors"


def reduced(**kw):
    return StaticQueryDecoder(in_channels=12, dim=16, queries=5, heads=4, ffn=32, layers=4, mask_dim=16, **kw)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_the_official_frame_decoder(mode):
    t = load_file(FIXTURE)
    state = {k: v for k, v in t.items() if not k.startswith(("input.", "output."))}
    model = reduced(fusion_dropout=0.0, fusion_drop_path=0.0, static_dropout=0.0)
    model.load_state_dict(convert(state, FRAME_DECODER, model), strict=True)
    model.train(mode == "train")
    n = t["input.mask_features"].shape[0]
    # in training with gradients, as a training step runs it (the supervised masks then come from one product)
    with torch.enable_grad() if mode == "train" else torch.no_grad():
        out = model([t[f"input.map{i}"] for i in range(3)], t["input.mask_features"], t["input.lang"].expand(n, -1, -1),
                    (t["input.lang_mask"] == 0).expand(n, -1), t["input.cues"][None].expand(n, -1, -1),
                    keep=3 if mode == "train" else 1)
    torch.testing.assert_close(torch.stack(out["logits"]), t[f"output.{mode}.logits"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.stack(out["masks"]), t[f"output.{mode}.masks"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["frame_queries"], t[f"output.{mode}.frame_queries"], atol=1e-6, rtol=1e-5)


def test_old_checkpoints_name_the_queries_static_query():
    t = load_file(FIXTURE)
    state = {("static_query.weight" if k == "query_feat.weight" else k): v for k, v in t.items()
             if not k.startswith(("input.", "output."))}
    model = reduced()
    assert torch.equal(convert(state, FRAME_DECODER, model)["query_feat.weight"], t["query_feat.weight"])
