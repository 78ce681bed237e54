"""DsHmp's clip stage (HMP + motion decoder) against the official ``DsHmpHierarchical``: numbers in
``fixtures/dshmp_motion_decoder_official.safetensors`` (random weights of a reduced configuration, dropouts off),
made by tests/fixtures/make_dshmp_motion_decoder.py; loaded through the converter's rules, strictly."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rvos.models.convert.dshmp import MOTION_DECODER
from rvos.models.convert.rules import ConversionError, convert
from rvos.models.modules.motion_decoder import MotionDecoder

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_motion_decoder_official.safetensors"


def official():
    t = load_file(FIXTURE)
    return {k: v for k, v in t.items() if not k.startswith(("input.", "output."))}, t


def reduced(**kw):
    return MotionDecoder(dim=16, frame_queries=3, queries=4, heads=4, ffn=32, hmp_layers=2, layers=2, window=8,
                         mask_dim=16, conv_dim=16, **kw)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_matches_the_official_clip_stage(mode):
    state, t = official()
    model = reduced(fusion_dropout=0.0, fusion_drop_path=0.0, motion_dropout=0.0)
    model.load_state_dict(convert(state, MOTION_DECODER, model), strict=True)
    model.train(mode == "train")
    frames = t[f"input.{mode}.frame_queries"]  # (L, T, fQ, C), one clip
    if mode == "eval":
        frames = frames[-1:]  # the official code keeps the last frame-decoder layer at inference
    n = frames.shape[0]
    with torch.no_grad():
        out = model(frames, t["input.lang"].expand(n, -1, -1), (t["input.lang_mask"] == 0).expand(n, -1),
                    t["input.cues"][None].expand(n, -1, -1))
    flat = lambda x: x.flatten(1, 2) if x.dim() == 5 else x  # noqa: E731  official (D, L, B, ...) -> (D, L*B, ...)
    torch.testing.assert_close(out["logits"], flat(t[f"output.{mode}.logits"]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["mask_embed"], flat(t[f"output.{mode}.mask_embed"]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["contrastive_embed"], t[f"output.{mode}.contrastive_embed"].flatten(0, 1),
                               atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["frame_embed"], t[f"output.{mode}.frame_embed"].flatten(0, 1), atol=1e-6, rtol=1e-5)


def test_conversion_is_strict():
    state, _ = official()
    model = reduced()
    with pytest.raises(ConversionError, match="match no conversion rule"):
        convert(state | {"vita_extra.weight": torch.zeros(1)}, MOTION_DECODER, model)
    with pytest.raises(ConversionError, match="1 missing"):
        convert({k: v for k, v in state.items() if k != "query_feat.weight"}, MOTION_DECODER, model)
    with pytest.raises(ConversionError, match="another shape"):
        convert(state, MOTION_DECODER, MotionDecoder(dim=16, frame_queries=3, queries=5, heads=4, ffn=32,
                                                     hmp_layers=2, layers=2, mask_dim=16, conv_dim=16))
