"""Every annotated object as a target of its own query, and track grounding of the queries, in the ReferFormer-style
methods (SgMg, MUTR; CPU-size options): the targets, the Hungarian matching of a clip's objects, the class's
positives, the track loss over the video's sentences, the union rule, and the streaming session against the model's
own selection; and the number of objects a sentence names (``model.track.count``) in these and DsHmp."""

from types import SimpleNamespace

import pytest
import torch

from rvos.config import load_config
from rvos.data.schema import Expression, Video
from rvos.errors import ConfigError
from rvos.models.build import build_model
from rvos.models.criterion.referformer import (ReferLossConfig, instance_targets, layer_losses, match,
                                               num_valid_frames)
from rvos.models.meta.base import ClipBatch, TrackClips, describe_model
from rvos.models.modules.query_init import link_boxes, link_masks, reorder
from rvos.models.modules.track_grounding import duplicate_masks

SENTENCES = ["the red block moving right", "the still block"]
SPLIT = SimpleNamespace(videos={"v": Video("v", ("0",), {"0": Expression("0", SENTENCES[0], ("1",), ("1",)),
                                                         "1": Expression("1", SENTENCES[1], ("2",), ("2",)),
                                                         "2": Expression("2", "both blocks", ("1", "2"), ("1", "2"))})})
TRACK = ["model.loss.instance_targets=true", "model.track.enabled=true", "model.track.replay=4",
         "model.track.replay_draw=2", "model.selection=union"]


def tiny(method, *overrides):
    cfg = load_config(f"{method}_tiny_synth", ["data.short_side=48", "data.max_long_side=64", *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def clip_batch(model, t_len=3, h=48, w=64):
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, t_len, 3, h, w, generator=g) * 0.3
    inst = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        inst[0, t, 6:22, 4 + 6 * t:24 + 6 * t] = True
        inst[1, t, 28:44, 36:60] = True
    frames[:, :, 0][inst[0][None].expand(2, -1, -1, -1)] = 0.9
    return ClipBatch(frames, model.prepare_text(SENTENCES), SENTENCES, [inst, inst],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v", "v"], ["0", "1"],
                     iteration=10, instance_ids=[("1", "2"), ("1", "2")])


def test_every_shown_object_is_a_target_matched_to_a_query_of_its_own():
    cfg = ReferLossConfig()
    objects = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    objects[0, :, 0:3, 0:3] = True
    objects[1, 1, 4:8, 4:8] = True  # shown in frame 1 alone
    # object 2 is never shown: nothing to segment, no target
    referred = [torch.tensor([False, True, True]), torch.tensor([True])]
    targets = instance_targets([objects, objects[:1]], referred, (8, 8))
    assert targets.clips.tolist() == [0, 0, 1] and targets.referred.tolist() == [False, True, True]
    assert targets.valid.tolist() == [[True, True], [False, True], [True, True]]
    logits = torch.full((2, 2, 4), -3.0)
    boxes = torch.full((2, 2, 4, 4), 0.5)
    masks = torch.full((2, 2, 4, 8, 8), -8.0)
    # clip 0: query 3 is object 0, query 1 object 1, and query 2 fits object 0 nearly as well as query 3 does
    masks[0, :, 3] = torch.where(targets.masks[0] > 0, 8.0, -8.0)
    masks[0, :, 2] = torch.where(targets.masks[0] > 0, 6.0, -8.0)
    masks[0, :, 1] = torch.where(targets.masks[1] > 0, 8.0, -8.0)
    masks[1, :, 0] = torch.where(targets.masks[2] > 0, 8.0, -8.0)
    matched = match(logits, boxes, masks, targets, targets.masks, cfg)
    assert matched.tolist() == [3, 1, 0]
    norm = num_valid_frames(targets.valid)
    assert norm == 5.0
    pairs = masks[targets.clips, :, matched]
    losses = layer_losses(logits, boxes, matched, pairs, None, targets, cfg, norm)
    # the class: the referred objects' queries positive where their objects show (object 1: frame 1), the rest not
    p = torch.sigmoid(torch.tensor(-3.0))
    neg, pos = 0.75 * p**2 * -torch.log(1 - p), 0.25 * (1 - p) ** 2 * -torch.log(p)
    torch.testing.assert_close(losses["class"], cfg.class_weight * (13 * neg + 3 * pos) / norm)
    assert losses["dice"].item() < 1e-2
    too_many = torch.ones(5, 2, 8, 8, dtype=torch.bool)
    many = instance_targets([too_many, objects], [torch.ones(5, dtype=torch.bool), torch.ones(3, dtype=torch.bool)],
                            (8, 8))
    with pytest.raises(ConfigError, match="5 annotated objects.*4 queries.*model.queries"):
        match(logits, boxes, masks, many, many.masks, cfg)


@pytest.mark.parametrize("method, extra", [("sgmg", []), ("sgmg", ["model.fine=4", "model.track_refined=true"]),
                                           ("sgmg", ["model.proposals=false", "model.link=masks"]), ("mutr", [])])
def test_track_grounding_trains_the_queries_score_on_every_sentence_of_the_video(method, extra):
    model, cfg = tiny(method, *TRACK, *extra)
    model.train().prepare_training(SPLIT)
    b = clip_batch(model)
    out = model(b)
    q = cfg.model.queries
    assert out["track_logits"].shape == (2, q) and out["slot_tracks"].shape[:2] == (2, q)
    assert out["targets"].clips.tolist() == [0, 0, 1, 1]  # both objects of both clips
    if method == "sgmg":  # the queries of a clip's two objects are two (MUTR matches in its loss)
        assert out["matched"][-1, 0] != out["matched"][-1, 1]
    losses = model.loss(out, b)
    assert torch.isfinite(losses["track"]) and len(model.track_replay) == 2
    # each clip's example: its queries and the 2 objects' exact tracks, against the video's 3 sentences
    example = model.track_replay.examples[0]
    assert example.tracks.shape[0] == q + 2
    assert example.labels[:, q:].tolist() == [[1, 0], [0, 1], [1, 1]]
    sum(losses.values()).backward()
    assert model.track_head.text.weight.grad is not None
    again, _ = tiny(method, *TRACK, *extra)
    again.load_training_state(model.training_state())
    assert [e.sentences for e in again.track_replay.draw(4)] == [e.sentences for e in model.track_replay.draw(4)]
    described = describe_model(model)["selection"]
    rule = "as many of the likeliest" if cfg.model.track.count else "union of queries"  # sgmg's tiny config counts
    assert described["score"].startswith("track grounding") and rule in described["rule"]


@pytest.mark.parametrize("method", ["sgmg", "mutr", "dshmp"])
def test_the_track_head_also_learns_from_the_clips_read_for_it(method):
    model, _ = tiny(method, "model.track.replay=8", "model.track.replay_draw=0")
    model.train().prepare_training(SPLIT)
    assert model.reads_track_clips
    b = clip_batch(model)
    frames = torch.rand(3, 3, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    objects = torch.zeros(2, 3, 40, 56, dtype=torch.bool)
    objects[0, :, 4:20, 4:20] = True
    objects[1, :, 24:36, 30:50] = True
    b.track_clips = TrackClips(frames, [objects, objects[:1], objects[1:]], [("1", "2"), ("1",), ("2",)],
                               ["v", "v", "v"], [False, False, True])
    losses = model.loss(model(b), b)
    assert torch.isfinite(losses["track"]) and len(model.track_replay) == 2 + 3
    assert [e.labels.tolist() for e in list(model.track_replay.examples)[2:]] == [
        [[1, 0], [0, 1], [1, 1]], [[1], [0], [1]], [[0], [1], [1]]]
    sum(losses.values()).backward()
    assert model.track_head.text.weight.grad is not None
    off = ["model.track.enabled=false"] + {"dshmp": ["model.split_blobs=false", "model.pixel_decoder.fine=0"],
                                           "sgmg": ["model.track_refined=false"]}.get(method, [])
    assert not tiny(method, *off)[0].reads_track_clips


@pytest.mark.parametrize("method, extra", [("sgmg", ["model.proposals=false", "model.link=false",
                                                    "model.duplicate_iou=0"]),
                                           ("sgmg", ["model.duplicate_iou=0"]), ("sgmg", []),
                                           ("sgmg", ["model.fine=4", "model.track_refined=true"]),
                                           ("sgmg", ["model.track.exclusive=true"]),
                                           ("sgmg", ["model.prior_stride=4"]),
                                           ("sgmg", ["model.proposals=false", "model.link=masks"]), ("mutr", [])])
def test_with_track_grounding_the_session_selects_what_the_model_selects(method, extra):
    model, _ = tiny(method, *TRACK, *extra, "model.track.count=0")  # the threshold's rule (the count's: below)
    if "model.fine=4" in extra:  # the stride-2 stage off its zero start, so that its map counts
        torch.nn.init.normal_(model.mask_refine.fine[-1].weight, std=0.1)
    model.eval()
    b = clip_batch(model)
    with torch.no_grad():
        out = model(b)
        expected = model.postprocess(out, 0.3)
        session = model.start_session(b.text, 0.3)
        frames = b.frames[1]
        session.observe(frames, 0)
        session.decode()
        got = session.predict(frames, 0)
        _, (probs, candidates) = session.candidates(frames, 0)  # clip 1 is read with sentence 1
    torch.testing.assert_close(probs[0], out["track_logits"][1].sigmoid(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1].scores, expected[1].scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1].logits, expected[1].logits, atol=1e-3, rtol=1e-3)
    kept = (out["track_logits"][1].sigmoid() > 0.3).sum().clamp(min=1)  # the best query kept whatever its probability
    assert got[1].logits.shape[1] == kept
    assert candidates.shape[1] == model.cfg.queries


# DsHmp: its config's linked frame-query slots, at stride 2 (the config's) and at stride 4
@pytest.mark.parametrize("method, extra", [("sgmg", []), ("mutr", []), ("dshmp", ["model.split_blobs=false"]),
                                           ("dshmp", ["model.split_blobs=false", "model.pixel_decoder.fine=0"])])
def test_with_a_count_the_likeliest_queries_are_kept_as_many_as_the_sentence_names(method, extra):
    model, _ = tiny(method, *TRACK, *extra, "model.track.count=3")
    if getattr(model, "links_objects", False):  # peaks near 0.5 at random weights, so that some slots are objects
        model.even_objectness_prior()
    model.train().prepare_training(SPLIT)
    b = clip_batch(model)
    losses = model.loss(model(b), b)
    losses["track_count"].backward()  # the classifier learns from every sentence of the clip's video
    assert model.track_head.count[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model.track_head.count[-1].weight.zero_()
        model.track_head.count[-1].bias.copy_(torch.tensor([-9.0, 9.0, -9.0]))  # every sentence names two objects
        out = model(b)
        expected = model.postprocess(out, 0.99)
        session = model.start_session(b.text, 0.99)
        frames = model.pad(b.frames[1]) if method == "dshmp" else b.frames[1]  # DsHmp's session reads padded frames
        session.observe(frames, 0)
        session.decode()
        got = session.predict(frames, 0)
    assert out["object_counts"] == [2, 2] and session.object_counts == [2, 2]
    assert (out["track_logits"].sigmoid() < 0.99).all() and expected[1].logits.shape[1] == 2  # none passes 0.99
    torch.testing.assert_close(got[1].scores, expected[1].scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1].logits, expected[1].logits, atol=1e-3, rtol=1e-3)
    assert "as many of the likeliest" in describe_model(model)["selection"]["rule"]


@pytest.mark.parametrize("method", ["sgmg", "mutr"])
@pytest.mark.parametrize("option", ["model.track.crop=12", "model.track.min_objectness=0.5",
                                    "model.track.text=sentence"])
def test_track_options_that_do_not_apply_are_refused(method, option):
    with pytest.raises(ConfigError, match=option.split("=")[0].split(".")[-1]):
        load_config(f"{method}_tiny_synth", [*TRACK, option])
    with pytest.raises(ConfigError, match="top1"):
        load_config(f"{method}_tiny_synth", ["model.selection=best"])


def test_linking_by_masks_keeps_each_slot_on_its_object_and_seeks_a_vanished_one_where_it_was():
    """Three queries decoded in each frame alone, in a different order in every frame: A moves right, B stays, the
    third query shows nothing; B vanishes in frame 2 (its query shows nothing there) and is back in frame 3."""
    t_len, h, w = 4, 12, 24
    truth = torch.zeros(t_len, 3, h, w, dtype=torch.bool)  # slot order: A, B, nothing
    for t in range(t_len):
        truth[t, 0, 2:6, 2 + 2 * t:8 + 2 * t] = True
        if t != 2:
            truth[t, 1, 7:11, 14:20] = True
    orders = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]])  # frame t's query k shows slot orders[t, k]
    masks = torch.stack([truth[t, orders[t]] for t in range(t_len)])[None]
    queries = torch.randn(8).expand(1, t_len, 3, 8)  # all alike: the masks decide
    perms, _ = link_masks(masks, queries)
    torch.testing.assert_close(reorder(masks, perms)[0], truth)
    # in two windows, the second continuing from the first's state: the same slots
    first, state = link_masks(masks[:, :2], queries[:, :2])
    second, _ = link_masks(masks[:, 2:], queries[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), perms)


def test_linking_by_boxes_keeps_each_slot_on_the_box_that_overlaps_its_last_one():
    """MUTR's frame queries, in a different order in every frame: A moves right by less than its width a frame, B
    stays beside it, C is small and still; all queries alike, so the boxes decide."""
    t_len = 4
    truth = torch.tensor([[[0.20 + 0.05 * t, 0.3, 0.12, 0.2], [0.50, 0.3, 0.12, 0.2], [0.8, 0.8, 0.03, 0.03]]
                          for t in range(t_len)])  # (T, slot, 4) cx, cy, w, h
    orders = torch.tensor([[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
    boxes = torch.stack([truth[t, orders[t]] for t in range(t_len)])[None]
    perms, _ = link_boxes(boxes, torch.randn(8).expand(1, t_len, 3, 8))
    torch.testing.assert_close(reorder(boxes, perms)[0], truth)


def test_a_second_query_on_an_object_is_a_duplicate_of_the_larger_one():
    """Frame 0: queries 0 and 2 on object A (2 the larger), query 1 on B, query 3 empty, query 4 on A and B at once
    (IoU under the limit with either). Frame 1: query 0 covers most of query 1's mask, and query 2 most of query 0's:
    0 is a duplicate of 2, and 1 is compared with the kept 2 only, under the limit."""
    h, w = 12, 24
    masks = torch.zeros(2, 5, h, w, dtype=torch.bool)
    masks[0, 2, 2:8, 2:8] = True  # A, 36 cells
    masks[0, 0, 2:8, 2:7] = True  # A again, 30 cells: IoU 0.83 with query 2
    masks[0, 1, 2:8, 14:20] = True  # B
    masks[0, 4, 2:8, 2:20] = True  # 108 cells: IoU 0.33 with A, 0.33 with B
    masks[1, 2, 0:8, 0:10] = True  # 80 cells
    masks[1, 0, 0:8, 2:10] = True  # 64 cells: IoU 0.8 with query 2
    masks[1, 1, 0:8, 5:10] = True  # 40 cells: IoU 0.625 with query 0 (a duplicate), 0.5 with query 2
    duplicate = duplicate_masks(masks, 0.55)
    assert duplicate.tolist() == [[True, False, False, False, False], [True, False, False, False, False]]
    assert not duplicate_masks(masks, 0.9).any()
    assert duplicate_masks(masks[None], 0.55)[0].tolist() == duplicate.tolist()  # any leading dimensions


def test_sgmg_empties_a_duplicate_querys_masks_before_the_linking():
    model, _ = tiny("sgmg", *TRACK, "model.duplicate_iou=0.5")
    model.eval()
    b = clip_batch(model)
    with torch.no_grad():
        out = model.encode_frames(b.frames[0], model.encode_text(b.text).take(0, 3), 3)
        priors = out["priors"].clone()  # (L, T, Q, 16, h, w)
        priors[:, :, 0, :, 1:4, 1:4] = 3.0  # query 0 shows something in every frame
        priors[:, :, 1] = priors[:, :, 0]  # query 1 shows what query 0 shows: the later of two equal masks drops
        priors[:, :, 2:] = -1.0  # the others show nothing: no duplicates, left as they are
        kept = model.without_duplicates(priors)
        duplicate = duplicate_masks(model.coarse_masks(priors[-1]) > 0, 0.5)  # (T, Q), of the last layer
        assert duplicate[:, 1].all() and not duplicate[:, [0, *range(2, duplicate.shape[1])]].any()
        torch.testing.assert_close(kept[:, ~duplicate], priors[:, ~duplicate])  # the others as they were
        assert (model.coarse_masks(kept[-1, :, 1]) < 0).all()
        assert (model.refine(kept[-1, :, 1], out["stride4"], out["stride8"]) < 0).all()
        assert (model.refine(kept[-1, :, 0], out["stride4"], out["stride8"]) > 0).any()
    assert "emptied" in describe_model(model)["selection"]["track"]
    with pytest.raises(ConfigError, match="duplicate_iou.*model.link"):
        load_config("sgmg_tiny_synth", ["model.proposals=false", "model.link=false", "model.duplicate_iou=0.5"])
    with pytest.raises(ConfigError, match="duplicate_iou"):
        load_config("sgmg_tiny_synth", ["model.duplicate_iou=1.0"])


def test_sgmg_track_head_reads_the_refined_masks_on_the_priors_grid():
    model, _ = tiny("sgmg", *TRACK, "model.fine=4", "model.track_refined=true")
    torch.nn.init.normal_(model.mask_refine.fine[-1].weight, std=0.1)
    model.eval()
    b = clip_batch(model)
    with torch.no_grad():
        out = model.encode_frames(b.frames[0], model.encode_text(b.text).take(0, 3), 3)
        priors = out["priors"][-1]  # (T, Q, 16, h, w)
        read = model.track_masks(priors, out["stride4"], out["stride8"], out["stride2"])
        coarse = model.coarse_masks(priors)
        refined = model.refine(priors[:, 3], out["stride4"], out["stride8"], out["stride2"])  # (T, H', W')
    assert read.shape == coarse.shape and refined.shape[-2:] == (2 * coarse.shape[-2], 2 * coarse.shape[-1])
    # cell (i, j) of query 3: the mean of the refined logits over its 2 x 2 pixels, not the prior's logit
    torch.testing.assert_close(read[:, 3, 5, 7], refined[:, 10:12, 14:16].mean((-2, -1)))
    assert not torch.allclose(read, coarse)
    assert "refined masks" in describe_model(model)["selection"]["score"]
    with pytest.raises(ConfigError, match="track_refined.*model.track.enabled"):
        load_config("sgmg_tiny_synth", ["model.track.enabled=false", "model.track_refined=true"])


def test_sgmg_queries_share_each_frames_cells_with_track_exclusive():
    """With ``model.track.exclusive`` each cell of a frame goes to the query whose refined logit is the highest there,
    in the masks the track head reads and in the output: a query keeps its cells where it is the highest and is under 0
    where another query is surer and over 0."""
    model, _ = tiny("sgmg", *TRACK, "model.fine=4", "model.track.exclusive=true", "model.track.count=0")
    torch.nn.init.normal_(model.mask_refine.fine[-1].weight, std=0.1)
    model.eval()
    b = clip_batch(model)
    with torch.no_grad():
        out = model.encode_frames(b.frames[0], model.encode_text(b.text).take(0, 3), 3)
        priors = out["priors"][-1]
        refined = model.refine_queries(priors, out["stride4"], out["stride8"], out["stride2"])  # (T, Q, H', W')
        read = model.track_masks(priors, out["stride4"], out["stride8"], out["stride2"])
        probs = torch.full((3, model.cfg.queries), 0.1)
        probs[:, [0, 2]] = 0.9  # queries 0 and 2 chosen and kept in every frame
        shown = model.select(probs, priors, out["stride4"], out["stride8"], torch.tensor([0, 2]), 0.5, 0,
                             out["stride2"]).logits  # (T, 2, H', W')
    shared = refined.clone()
    others = torch.stack([refined[:, [k for k in range(refined.shape[1]) if k != q]].amax(1)
                          for q in range(refined.shape[1])], 1)
    shared[refined < others] -= others.clamp(min=0)[refined < others]
    assert ((shared > 0).sum(1) <= 1).all() and (refined > 0).sum(1).max() > 1  # the random queries overlap
    torch.testing.assert_close(read, torch.nn.functional.interpolate(shared, size=read.shape[-2:], mode="area"))
    torch.testing.assert_close(shown, shared[:, [0, 2]])
    with pytest.raises(ConfigError, match="model.track.exclusive.*set model.track_refined"):
        load_config("sgmg_tiny_synth", ["model.track_refined=false", "model.track.exclusive=true"])
