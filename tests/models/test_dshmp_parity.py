"""The whole DsHmp against the official model: ``fixtures/dshmp_model_official.safetensors`` holds the official
state dict (``DsHmp.state_dict()``'s names) of a reduced random configuration and what the official
``DsHmp.inference`` gives on an 11-frame video and a padded sentence, made by tests/fixtures/make_dshmp_model.py.
The checkpoint is loaded through rvos's converter, strictly, and rvos's streaming session (windows of the official
chunk size) must give the official referring probabilities and per-query mask logits.

Float32 rounding: this small random network amplifies a difference of one ulp in its input about a thousandfold.
The fixture's frames use only the pixel levels that normalise to the same float32 in both orders (rvos normalises
frames in [0, 1], the official 0..255 ones), and the model is compared on the official mapper's tokens (padded to
40); rvos's own tokenization (padded to the longest sentence) gives the same ids, and the same outputs within that
amplified rounding (the padded words are masked everywhere, but sums over more words round differently).
"""

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from rvos.config import from_dict
from rvos.models.convert.dshmp import convert_checkpoint
from rvos.models.convert.rules import ConversionError
from rvos.models.meta.base import TextInputs
from rvos.models.meta.dshmp import DsHmpConfig, DsHmpModel

FIXTURE = Path(__file__).parent.parent / "fixtures" / "dshmp_model_official.safetensors"


@functools.cache
def official():
    """(official state dict, inputs and outputs, the reduced configuration)."""
    t = load_file(FIXTURE)
    with safe_open(FIXTURE, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    return {k: v for k, v in t.items() if not k.startswith(("input.", "output."))}, t, cfg


def reduced(cfg: dict) -> DsHmpModel:
    s = cfg["swin"]
    return DsHmpModel(from_dict(DsHmpConfig, {
        "hidden_dim": cfg["hidden_dim"], "mask_dim": cfg["mask_dim"], "score_threshold": cfg["output_threshold"],
        "selection": "union", "size_divisibility": cfg["size_divisibility"], "pixel_mean": cfg["pixel_mean"],
        "pixel_std": cfg["pixel_std"],
        "text": {"model": cfg["text"], "pretrained": False, "decoupler": "lexicon", "max_tokens": cfg["max_tokens"]},
        "backbone": {"embed_dim": s["embed_dim"], "depths": s["depths"], "heads": s["heads"], "window": s["window"],
                     "drop_path_rate": s["drop_path_rate"], "mlp_ratio": s["mlp_ratio"]},
        "pixel_decoder": cfg["pixel_decoder"], "frame_decoder": cfg["frame_decoder"], "motion": cfg["motion"],
        "contrastive": {"entries": cfg["memory_bank_entries"]}}))


@functools.cache
def loaded() -> DsHmpModel:
    state, _, cfg = official()
    model = reduced(cfg)
    model.load_state_dict(convert_checkpoint(state, model), strict=True)
    return model.eval()


def frames() -> torch.Tensor:
    return official()[1]["input.frames"].float() / 255  # the official model reads 0..255 frames


def text_inputs(official_padding: bool) -> TextInputs:
    """rvos's prepared sentence; ``official_padding``: its token ids padded to 40 as the official mapper does."""
    _, t, cfg = official()
    text = loaded().prepare_text([cfg["sentence"]])
    if official_padding:
        text = TextInputs(text, input_ids=t["input.lang_tokens"][None], attention_mask=t["input.lang_mask"][None])
    return text


@functools.cache
def session_outputs(official_padding: bool = True) -> dict:
    """rvos's streaming session on the fixture's video: the normalised frames its backbone reads, the probabilities
    (cQ,), every query's mask logits (T, cQ, h, w) and its selected masks (T, H, W), upsampled as the official
    post-processing does."""
    _, _, cfg = official()
    model, video = loaded(), frames()
    chunk = cfg["test_run_chunk_size"]
    windows = [(s, model.pad(video[s:s + chunk])) for s in range(0, len(video), chunk)]
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            session = model.start_session(text_inputs(official_padding))
            for start, window in windows:
                session.observe(window, start)
            session.decode()
            candidates = [session.candidates(window, start)[0] for start, window in windows]
            selected = [session.predict(window, start)[0] for start, window in windows]
    finally:
        hook.remove()
    probs = torch.cat([p for p, _ in candidates])
    assert torch.equal(probs, probs[:1].expand_as(probs))  # one probability per query over the whole video
    masks = torch.cat([s.masks(model.mask_stride, video.shape[-2:], (cfg["height"], cfg["width"])) for s in selected])
    return {"normalised": torch.cat(seen[:len(windows)]), "probs": probs[0],
            "mask_logits": torch.cat([logits for _, logits in candidates]), "masks": masks}


def test_inputs_match_the_official():
    """The same token ids (before the official mapper's padding) and cue maps, and frames normalised to the same
    floats as the official ``(x - pixel_mean) / pixel_std``."""
    _, t, cfg = official()
    text = text_inputs(official_padding=False)
    n = int(t["input.lang_mask"].sum())
    assert text["input_ids"][0].tolist() == t["input.lang_tokens"][:n].tolist()
    assert text["motion"][0].tolist() == t["output.motion_map"].bool().tolist()
    assert text["static"][0].tolist() == t["output.static_map"].bool().tolist()
    mean, std = (torch.tensor(cfg[k]).view(3, 1, 1) for k in ("pixel_mean", "pixel_std"))
    assert torch.equal(session_outputs()["normalised"], (t["input.frames"].float() - mean) / std), \
        "rvos's normalisation rounds differently from the official on the fixture's frames (see the module doc)"


def test_stages_match_the_official():
    """Text features, static and motion cues, and the frame queries the motion decoder reads."""
    _, t, _ = official()
    model, video = loaded(), frames()
    with torch.no_grad():
        text = model.encode_text(text_inputs(official_padding=True))
        fo, _ = model.encode_frames(video, text.take(0, len(video)))
    n = int(t["input.lang_mask"].sum())
    torch.testing.assert_close(text.words[0, :n], t["output.words"][:n], atol=1e-5, rtol=0)
    torch.testing.assert_close(text.static[0][~text.static_padding[0]], t["output.static_cues"], atol=1e-5, rtol=0)
    torch.testing.assert_close(text.motion[0][~text.motion_padding[0]], t["output.motion_cues"], atol=1e-5, rtol=0)
    torch.testing.assert_close(fo["frame_queries"][-1], t["output.frame_queries"], atol=1e-4, rtol=0)


def test_matches_the_official_model():
    """Referring probabilities (softmax foreground of the last motion-decoder layer) and every query's mask logits
    at stride 4 over the whole video."""
    _, t, _ = official()
    out = session_outputs()
    torch.testing.assert_close(out["probs"], t["output.probs"], atol=1e-4, rtol=0)
    # logits up to ~10: float32 rounding differs between library versions (transformers 5.24's RoBERTa: 1.3e-4 at
    # most, 2e-5 relative), so the bound is relative as well
    torch.testing.assert_close(out["mask_logits"], t["output.mask_logits"].transpose(0, 1), atol=1e-4, rtol=1e-4)


def test_matches_with_rvos_padding():
    """With rvos's own tokenization the outputs agree within the amplified rounding."""
    _, t, _ = official()
    out = session_outputs(official_padding=False)
    torch.testing.assert_close(out["probs"], t["output.probs"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["mask_logits"], t["output.mask_logits"].transpose(0, 1), atol=1e-3, rtol=0)


def test_candidates_give_the_official_masks():
    """The official post-processing applied to rvos's candidates gives the official ``pred_masks``: the queries
    over the threshold, each one's logits upsampled (bilinear, to the padded size, cropped), > 0, then their
    union."""
    _, t, cfg = official()
    out = session_outputs()
    keep = out["probs"] > cfg["output_threshold"]
    assert int(keep.sum()) == len(t["output.pred_scores"])
    logits = F.interpolate(out["mask_logits"][:, keep], scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.equal((logits[..., :cfg["height"], :cfg["width"]] > 0).any(1), t["output.pred_masks"][0].bool())


def test_selection_gives_the_official_masks():
    """rvos's own selection (``predict``, then ``ClipMasks.masks``: each kept query upsampled, then the union)
    gives the official ``pred_masks``."""
    _, t, _ = official()
    assert torch.equal(session_outputs()["masks"], t["output.pred_masks"][0].bool())


def test_conversion_is_strict():
    state, _, cfg = official()
    model = reduced(cfg)
    with pytest.raises(ConversionError, match="1 missing"):
        convert_checkpoint({k: v for k, v in state.items() if k != "vita_module.query_feat.weight"}, model)
    with pytest.raises(ConversionError, match="match no conversion rule"):
        convert_checkpoint(state | {"vita_module.extra.weight": torch.zeros(1)}, model)
    with pytest.raises(ConversionError, match="unexpected"):
        convert_checkpoint(state | {"backbone.extra.weight": torch.zeros(1)}, model)
    # the released checkpoint names the frame decoder's query features static_query, as the official loader renames
    renamed = {k.replace("predictor.query_feat.", "predictor.static_query."): v for k, v in state.items()}
    assert "sem_seg_head.predictor.static_query.weight" in renamed
    model.load_state_dict(convert_checkpoint(renamed, model), strict=True)


def test_convert_command_writes_a_model_folder_that_loads(tmp_path):
    """``rvos convert dshmp`` on the official file (detectron2 keeps the state dict under ``model``): the folder
    loads with the converted weights; a second run into it is refused and leaves it intact."""
    from rvos.cli import main
    from rvos.config import Config
    from rvos.engine.checkpoint import load_model

    state, _, cfg = official()
    torch.save({"model": state, "iteration": 7}, tmp_path / "model_final.pth")
    config = tmp_path / "reduced.yaml"  # JSON is YAML
    config.write_text(json.dumps(Config(model=reduced(cfg).cfg).to_dict()))
    args = ["-q", "convert", "dshmp", str(tmp_path / "model_final.pth"), "--out", str(tmp_path / "m"),
            "--config", str(config)]
    assert main(args) == 0
    model, _ = load_model(tmp_path / "m")
    expected = loaded().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert main(args) == 2 and (tmp_path / "m" / "model.safetensors").read_bytes() == before
