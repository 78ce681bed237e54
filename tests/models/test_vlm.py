"""What is specific to the conv-CLIP method (the contract itself is tested for every method in
test_contract.py)."""

import json
from pathlib import Path

import pytest
import torch

from rvos.cli import main
from rvos.config import load_config
from rvos.errors import ConfigError
from rvos.models.build import build_model
from rvos.models.meta.base import union_of_queries, upsample_masks

from test_contract import SIZE, clip_batch


def test_per_frame_control_decodes_every_frame_alone():
    cfg = load_config("vlm_tiny_synth", [*SIZE, "model.video_decoder.temporal=false"])
    model = build_model(cfg.model).eval()
    batch = clip_batch(model)
    out = model(batch)
    assert out["frames_per_clip"] == 1 and out["video_scores"][-1].shape == (8, 8)
    selected = model.postprocess(out)
    # 48x64 padded to 64x64, masks at stride 2 (encoder.fine)
    assert len(selected) == 2 and selected[0].union.shape == (4, 32, 32) and selected[0].scores.shape == (4,)
    assert torch.isfinite(sum(model.loss(out, batch).values()))


def test_selection_is_the_union_of_the_queries_over_the_threshold():
    cfg = load_config("vlm_tiny_synth", [*SIZE, "model.track.enabled=false"])  # the paper's rule
    model = build_model(cfg.model)
    probs = torch.tensor([[0.9, 0.2, 0.7]])  # one frame, three queries
    logits = torch.full((1, 3, 2, 2), -1.0)
    logits[0, 0, 0, 0] = 2.0  # kept
    logits[0, 1, 0, 1] = 3.0  # not kept: its probability is under 0.5
    logits[0, 2, 1, 1] = 1.0  # kept
    out = model.select(probs, logits)
    assert (out.union[0] > 0).tolist() == [[True, False], [False, True]] and out.logits.shape == (1, 2, 2, 2)
    assert out.scores.tolist() == pytest.approx([0.9])
    nothing = model.select(torch.tensor([[0.1, 0.2, 0.3]]), logits)
    assert not (nothing.logits > 0).any() and nothing.scores.tolist() == [0.0]


def test_the_union_is_taken_after_upsampling_as_the_official_code_does():
    """Two kept queries whose masks meet: the maximum of their logits, upsampled, would add foreground between
    them that neither query's upsampled mask has."""
    logits = torch.full((1, 2, 1, 2), -3.0)
    logits[0, 0, 0, 0] = 1.0
    logits[0, 1, 0, 1] = 1.0
    out = union_of_queries(torch.tensor([[0.9, 0.9]]), logits, 0.5)
    each = upsample_masks(logits[0], 4, (4, 8), (4, 8)) > 0
    assert torch.equal(out.masks(4, (4, 8), (4, 8))[0], each.any(0))
    assert (upsample_masks(out.union, 4, (4, 8), (4, 8)) > 0).sum() > each.any(0).sum()


def test_the_masks_trained_on_are_those_each_prediction_makes_at_inference():
    """In training the frame decoder's and the video decoder's masks of every layer are made in one product each;
    without gradients each prediction makes its own. The same logits, and the gradient reaches every layer."""
    torch.manual_seed(0)
    model = build_model(load_config("vlm_tiny_synth", SIZE).model).eval()  # proposals: the relative term too
    batch = clip_batch(model)
    trained = model(batch)
    with torch.no_grad():
        inferred = model(batch)
    for key, predictions in (("frame_masks", 4), ("video_masks", 3)):  # the frame decoder's initial queries too
        assert len(trained[key]) == len(inferred[key]) == predictions
        for a, b in zip(trained[key], inferred[key]):
            assert a.requires_grad and torch.allclose(a, b, atol=1e-5)
    sum(m.square().mean() for m in trained["frame_masks"][:1]).backward()
    assert model.frame_decoder.mask_head.layers[0].weight.grad.abs().sum() > 0  # the first prediction's masks


BOXES = ["model.frame_decoder.boxes=true", "model.loss.box_weight=5", "model.loss.giou_weight=2"]


def test_frame_boxes_are_supervised_at_the_frame_level_only():
    cfg = load_config("vlm_tiny_synth", [*SIZE, *BOXES])
    model = build_model(cfg.model)
    batch = clip_batch(model)
    out = model(batch)
    assert len(out["frame_boxes"]) == len(out["frame_masks"]) and out["frame_boxes"][-1].shape == (8, 8, 4)
    losses = model.loss(out, batch)
    assert {"frame_box_0", "frame_giou_3"} <= set(losses) and not any(k.startswith("video_box") for k in losses)
    sum(v for k, v in losses.items() if k.startswith("frame_box") or k.startswith("frame_giou")).backward()
    assert model.frame_decoder.box_head.layers[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("temporal", [True, False])
def test_the_slot_loss_supervises_the_slots_masks_over_the_clip(temporal):
    cfg = load_config("vlm_tiny_synth", [*SIZE, "model.track.slot_weight=1.0", "model.track.link=adjacent",
                                         "model.track.exclusive=false", "model.track.duplicate_iou=0",
                                         f"model.video_decoder.temporal={str(temporal).lower()}"])
    model = build_model(cfg.model)
    batch = clip_batch(model)
    losses = model.loss(model(batch), batch)
    assert losses["slot_mask"] > 0 and losses["slot_dice"] > 0
    (losses["slot_mask"] + losses["slot_dice"]).backward()
    assert model.frame_decoder.mask_head.layers[-1].weight.grad.abs().sum() > 0
    assert model.video_decoder.mask_head.layers[-1].weight.grad is None  # the video queries' masks are not the slots'


PROPAGATE = [*SIZE, *BOXES, "model.frame_decoder.proposals=false", "model.frame_decoder.propagate=true",
             "model.track.link=adjacent", "model.track.exclusive=false", "model.track.duplicate_iou=0"]


def assert_windows_decode_as_one(model, frames, sentences, window: int) -> list:
    """A session observing ``frames`` in windows of ``window`` frames gives the candidates (scores and masks) of one
    window of every frame; returns the windows' candidates."""
    with torch.no_grad():
        whole = model.start_session(sentences, None)
        whole.observe(frames, 0)
        whole.decode()
        one = whole.candidates(frames, 0)
        windowed = model.start_session(sentences, None)
        starts = range(0, len(frames), window)
        for start in starts:
            windowed.observe(frames[start:start + window], start)
        windowed.decode()
        parts = [windowed.candidates(frames[start:start + window], start) for start in starts]
    for k, (probs, logits) in enumerate(one):
        torch.testing.assert_close(torch.cat([p[k][1] for p in parts]), logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.cat([p[k][0] for p in parts]), probs, atol=1e-6, rtol=1e-6)
    return parts


def test_propagated_queries_are_the_slots_and_windows_decode_as_one():
    """With ``frame_decoder.propagate`` each frame starts from the previous frame's queries: the slots are the
    queries themselves (no linking), and a clip of 4 frames observed in windows of 3 and 1 frames carries them
    across the windows, giving the masks and scores of one window of 4."""
    torch.manual_seed(0)
    model = build_model(load_config("vlm_tiny_synth", PROPAGATE).model)
    batch = clip_batch(model)
    out = model(batch)
    masks = out["frame_masks"][-1].view(2, 4, 8, 32, 32)  # (B, T, Q, h, w): the frames, query by query
    assert torch.equal(out["slot_logits"], masks)
    model.eval()
    frames = model.pad(batch.frames[0])
    sentences = model.prepare_text(["the red square", "the thing that moves left"])
    parts = assert_windows_decode_as_one(model, frames, sentences, 3)
    # frame 0 of the second window starts from the first window's last queries: decoded alone it differs
    fresh = model.start_session(sentences, None)
    with torch.no_grad():
        fresh.observe(frames[3:], 0)
        fresh.decode()
        alone = fresh.candidates(frames[3:], 0)
    assert not torch.allclose(alone[0][1], parts[1][0][1], atol=1e-3)


def test_propagated_queries_are_matched_to_the_clips_objects_as_tracks():
    """One assignment per clip at the frame level: a query keeps its object in every frame it is visible in."""
    torch.manual_seed(0)
    model = build_model(load_config("vlm_tiny_synth", PROPAGATE).model)
    batch = clip_batch(model)
    out = model(batch)
    seen = []
    original = model.frame_criterion.matcher.__call__
    model.frame_criterion.matcher = lambda *a, **k: seen.append(original(*a, **k)) or seen[-1]
    losses = model.loss(out, batch)
    assert len(seen) == len(out["frame_masks"]) and all(len(m) == 2 for m in seen)  # 2 clips, not 8 frames
    sum(losses.values()).backward()
    assert model.frame_decoder.query_content.weight.grad.abs().sum() > 0
    control = build_model(load_config("vlm_tiny_synth", [*PROPAGATE, "model.video_decoder.temporal=false"]).model)
    assert not control.propagating  # the per-frame control has no temporal path


def test_frames_of_tracks_keeps_the_pairs_visible_in_each_frame():
    from rvos.models.meta.vlm import frames_of_tracks

    matches = [(torch.tensor([3, 0]), torch.tensor([1, 0]))]  # query 3 follows object 1, query 0 object 0
    frame_ids = [torch.tensor([0, 1]), torch.tensor([1])]  # frame 0 shows both, frame 1 only object 1
    (q0, k0), (q1, k1) = frames_of_tracks(matches, frame_ids, 2)
    assert q0.tolist() == [3, 0] and k0.tolist() == [1, 0]
    assert q1.tolist() == [3] and k1.tolist() == [0]


@pytest.mark.parametrize("overrides", [["model.frame_decoder.boxes=true"], ["model.loss.giou_weight=2"]])
def test_frame_boxes_and_box_weights_come_together(overrides):
    with pytest.raises((ConfigError, ValueError), match="frame_decoder.boxes"):
        load_config("vlm_tiny_synth", overrides)


def test_fine_mask_features_are_at_stride_2_start_as_the_stride_4_ones_and_decode_in_windows():
    """``encoder.fine``: the masks are at stride 2 of the padded input and the proposals' heatmap stays at stride 4;
    the stem's projection starts at zero (the stem changes nothing yet) and learns; a session (which computes the stem
    with the backbone's maps) decodes windows as one, and its output is brought to the frame's size."""
    torch.manual_seed(0)
    model = build_model(load_config("vlm_tiny_synth", [*SIZE, "model.encoder.fine=8"]).model)
    assert model.mask_stride == 2 and model.describe()["encoder"]["mask_stride"] == 2
    batch = clip_batch(model)
    out = model(batch)
    assert out["frame_masks"][-1].shape == (8, 8, 32, 32) and out["frame_objectness"].shape == (8, 1, 16, 16)
    assert out["video_masks"][-1].shape == (2, 8, 4, 32, 32) and out["slot_logits"].shape[-2:] == (32, 32)
    frames = model.pad(batch.frames[0])
    features = model.image_features(frames)
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    words, padding, _ = model.encode_text(batch.text)
    words, padding = words[:1].expand(4, -1, -1), padding[:1].expand(4, -1)
    start = model.encoder(features, words, padding)[0]
    torch.testing.assert_close(model.encoder([torch.randn_like(features[0]), *features[1:]], words, padding)[0], start)
    sum(model.loss(out, batch).values()).backward()
    assert model.encoder.fine.weight.grad.abs().sum() > 0
    model.eval()
    sentences = model.prepare_text(["the red square", "the thing that moves left"])
    parts = assert_windows_decode_as_one(model, frames, sentences, 3)
    probs, logits = parts[0][0]
    assert logits.shape == (3, 8, 32, 32)
    assert model.select(probs, logits).masks(model.mask_stride, (48, 64), (96, 128)).shape == (3, 96, 128)


def test_state_dict_names_are_those_of_earlier_run_folders():
    # the names and shapes of vlm_tiny_synth's weights as rvos 0.1 saved them, before the model contract: a run
    # folder trained then still loads
    saved = json.loads((Path(__file__).parents[1] / "fixtures" / "vlm_tiny_synth_0.1_state_dict.json").read_text())
    model = build_model(load_config("vlm_tiny_synth", ["model.track.enabled=false",  # as 0.1 had it
                                                     "model.frame_decoder.query_content=false",
                                                     "model.frame_decoder.proposals=false",
                                                     "model.encoder.fine=0"]).model)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == saved


@pytest.mark.slow
def test_paper_config_builds_with_the_reported_counts_and_a_frozen_clip(capsys):
    assert main(["-q", "info", "--config", "vlm_convnext_l_mevis", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    backbone = info["backbone"]
    assert info["method"] == "vlm"
    assert backbone["model"] == "convnext_large_d_320" and backbone["trainable"] == 0
    assert backbone["frozen"] == backbone["parameters"] > 350_000_000
    assert backbone["image_channels"] == [192, 384, 768, 1536]
    assert info["pretrained_weights"] == {"model.backbone.pretrained": "laion2b_s29b_b131k_ft_soup (not loaded)"}
    assert info["encoder"]["layers"] == 6
    assert (info["frame_decoder"]["layers"], info["frame_decoder"]["queries"]) == (9, 20)
    assert (info["video_decoder"]["layers"], info["video_decoder"]["queries"]) == (6, 20)
    assert info["total"]["trainable"] == info["total"]["parameters"] - backbone["parameters"] > 0
