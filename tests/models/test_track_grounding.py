"""Track grounding (model.track, a CPU-size option): the per-frame descriptors of a query's mask, tracks over a
clip, the labels of slots, and the conv-CLIP model with it: training on every sentence of the clip's video and the
streaming session equal to the model's own selection."""

import io
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from rvos.data.schema import Expression, Video
from rvos.errors import ConfigError
from rvos.models.build import build_model
from rvos.models.meta.base import ClipBatch, TrackClips
from rvos.models.modules.track_grounding import (CROP_DIM, FRAME_DIM, TRACK_DIM, TrackExample, TrackGrounding,
                                                 clip_examples, crop_windows, descriptor_probs, exclusive_masks,
                                                 frame_descriptors, on_mask_grid, relative_to_mean, slot_labels,
                                                 suppress_duplicates, track_bce, track_frames, tracks, video_counts,
                                                 video_sentences)

from contract import tiny_config

SIZE = ["data.short_side=48", "data.max_long_side=64"]
TRACK = ["model.track.enabled=true", "model.loss.instance_targets=true"]


def test_a_box_mask_reads_its_colour_place_size_and_fill():
    images = torch.zeros(1, 3, 20, 30)
    images[0, 0, 4:10, 6:18] = 1.0  # a red box
    masks = torch.zeros(1, 2, 20, 30)
    masks[0, 0, 4:10, 6:18] = 1.0
    d = frame_descriptors(images, masks)
    assert d.shape == (1, 2, FRAME_DIM)
    presence, colour, (cx, cy, sx, sy, area, fill) = d[0, 0, 0], d[0, 0, 1:4], d[0, 0, 4:10]
    assert presence == pytest.approx(1.0) and colour.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-4)
    assert cx == pytest.approx(11.5 / 29, abs=1e-4) and cy == pytest.approx(6.5 / 19, abs=1e-4)
    assert area == pytest.approx(72 / 600 * 10, abs=1e-4)
    # spreads: the pixel rows' and columns' standard deviation, in frame units x 4
    assert sx == pytest.approx(4 * (143 / 12) ** 0.5 / 29, abs=1e-4) and sy == pytest.approx(4 * (35 / 12) ** 0.5 / 19, abs=1e-4)
    assert 0.9 < fill <= 1.2  # a box fills its spread box (a discrete box slightly more than a continuous one)
    assert d[0, 1, 0] < 1e-6  # the empty mask is absent
    # a query's probabilities: 0.9 on the box, 0.02 on the rest of the frame (as much weight as 11 box cells):
    # described as the box the output shows
    probs = torch.where(masks > 0, 0.9, 0.02)
    torch.testing.assert_close(frame_descriptors(images, probs), d)


def test_shape_terms_tell_a_square_from_a_diamond_which_fill_their_spread_box_alike():
    import cv2
    import numpy as np

    canvas = {}
    for shape, points in {"square": [(20, 20), (60, 20), (60, 60), (20, 60)],
                          "diamond": [(40, 12), (68, 40), (40, 68), (12, 40)],
                          "triangle": [(40, 15), (70, 65), (10, 65)]}.items():
        mask = np.zeros((80, 80), np.uint8)
        cv2.fillPoly(mask, [np.array(points, np.int32)], 1)
        canvas[shape] = torch.from_numpy(mask).float()
    mask = np.zeros((80, 80), np.uint8)
    cv2.circle(mask, (40, 40), 25, 1, -1)
    canvas["disc"] = torch.from_numpy(mask).float()
    d = frame_descriptors(torch.zeros(1, 3, 80, 80), torch.stack(list(canvas.values()))[None])[0]
    fill, kx, ky, skew = d[:, 9], d[:, 10], d[:, 11], d[:, 12]
    square, diamond, triangle, disc = range(4)
    assert abs(fill[square] - fill[diamond]) < 0.05  # the spread and the fill alone cannot tell them apart
    assert kx[square] == pytest.approx(1.8, abs=0.05) and ky[square] == pytest.approx(1.8, abs=0.05)
    assert kx[diamond] == pytest.approx(2.4, abs=0.1) and ky[diamond] == pytest.approx(2.4, abs=0.1)
    assert kx[disc] == pytest.approx(2.0, abs=0.05)
    assert skew[triangle] < -0.4 and abs(skew[square]) < 0.05  # apex up: the rows pile up at the base


def test_tracks_resample_over_time_and_step_between_points():
    d = torch.zeros(1, 3, 1, FRAME_DIM)  # 3 frames, one slot moving right
    d[0, :, 0, 0] = 1.0
    d[0, :, 0, 4] = torch.tensor([0.1, 0.3, 0.5])
    t = tracks(d, samples=5)
    assert t.shape == (1, 1, 5, TRACK_DIM)
    assert t[0, 0, :, 4].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert t[0, 0, 1:, FRAME_DIM].tolist() == pytest.approx([1.0] * 4)  # 0.1 a step, x 10
    assert t[0, 0, 0, FRAME_DIM] == 0 and (t[0, 0, :, FRAME_DIM + 1] == 0).all()
    assert tracks(d[:, :1], samples=4).shape == (1, 1, 4, TRACK_DIM)  # one frame: a constant track


def test_the_head_can_read_a_track_relative_to_its_mean_position():
    d = torch.zeros(2, 3, 1, FRAME_DIM)  # the same motion in two places; absent in the last frame
    d[..., 0] = torch.tensor([1.0, 1.0, 0.0])[:, None]
    d[0, :, 0, 4] = torch.tensor([0.1, 0.3, 0.9])
    d[1, :, 0, 4] = torch.tensor([0.5, 0.7, 0.2])
    t = tracks(d, samples=3)
    r = relative_to_mean(t)
    assert r[0, 0, :, 4].tolist() == pytest.approx([-0.1, 0.1, 0.0])  # the mean of the present samples, 0 elsewhere
    torch.testing.assert_close(r[0], r[1])  # where it is no longer tells the two apart
    keep = [k for k in range(TRACK_DIM) if k not in (4, 5)]
    torch.testing.assert_close(r[..., keep], t[..., keep])  # presence, colour, shape and the steps unchanged
    head = TrackGrounding(text_dim=4, hidden=8, samples=3, relative_centre=True, dropout=0.5).eval()
    torch.testing.assert_close(head.embed(t)[0], head.embed(t)[1])
    plain = TrackGrounding(text_dim=4, hidden=8, samples=3)
    assert plain.state_dict().keys() == head.state_dict().keys()  # dropout adds no parameter
    head.train()
    torch.manual_seed(0)
    assert not torch.equal(head.embed(t.repeat(4, 1, 1, 1)), head.embed(t.repeat(4, 1, 1, 1)))  # dropout in training
    with pytest.raises(ConfigError, match="dropout"):
        tiny_config("vlm", *TRACK, "model.track.dropout=1.0")


def test_the_descriptors_read_the_mask_grid_or_the_frames_resolution():
    images = torch.rand(1, 3, 32, 64)
    logits = torch.full((1, 2, 8, 16), -10.0)
    logits[0, 0, 2:6, 4:8] = 10.0  # a 16 x 16 square at stride 4
    for full, size in ((False, (8, 16)), (True, (32, 64))):
        cfg = tiny_config("vlm", *SIZE, *TRACK, "model.encoder.fine=0",  # masks at stride 4
                          f"model.track.full_resolution={str(full).lower()}")
        model = build_model(cfg.model)
        read = model.descriptor_frames(images)
        probs = descriptor_probs(logits, read.shape[-2:])
        assert read.shape[-2:] == probs.shape[-2:] == size
        assert torch.equal(read, images) == full
        area = frame_descriptors(read, probs)[0, :, 8] / 10  # share of the frame
        assert area[0] == pytest.approx(0.125, abs=0.02) and area[1] == 0


def test_a_window_is_the_frame_around_the_masks_centroid():
    frames = torch.zeros(1, 3, 32, 64)
    frames[0, 0, 8:16, 20:28] = 1.0  # an 8 x 8 red square at full resolution
    frames[0, 2, 0:4, 0:4] = 1.0  # a blue corner
    masks = torch.zeros(1, 2, 8, 16)  # the mask grid, stride 4
    masks[0, 0, 2:4, 5:7] = 1.0  # the square's cells
    grid = masks.shape[-2:]
    windows = crop_windows(frames, frame_descriptors(F.interpolate(frames, size=grid, mode="area"), masks), grid, 12)
    assert windows.shape == (1, 2, 3, 12, 12)
    # the square in the middle of its window, two pixels of background around it
    torch.testing.assert_close(windows[0, 0, 0, 2:10, 2:10], torch.ones(8, 8))
    assert windows[0, 0, 0].sum() == pytest.approx(64) and windows[0, 0, 1:].abs().max() < 1e-6
    # an empty mask: its centroid is the first cell; beyond the frame the window reads 0
    corner = windows[0, 1, 2]
    assert corner.sum() == pytest.approx(16) and corner[:4].sum() == 0
    # the same at the frames' resolution (descriptors read at full resolution)
    full = F.interpolate(masks, size=(32, 64), mode="nearest")
    torch.testing.assert_close(crop_windows(frames, frame_descriptors(frames, full), (32, 64), 12)[0, 0], windows[0, 0])


def test_a_track_reads_frames_spread_over_those_where_it_is_present():
    presence = torch.zeros(1, 6, 3)  # 6 frames, 3 slots
    presence[0, :, 0] = 1.0  # slot 0 everywhere
    presence[0, 3:5, 1] = 1.0  # slot 1 in frames 3 and 4; slot 2 never
    values = torch.arange(6.0)[None, :, None].expand(1, 6, 3)  # each frame's index
    chosen, present = track_frames(values, presence, 2)
    assert chosen[0].tolist() == [[1.0, 4.0], [3.0, 4.0], [0.0, 0.0]]
    assert present[0].tolist() == [[True, True], [True, True], [False, False]]
    chosen, present = track_frames(values, presence, 1)
    assert chosen[0, :, 0].tolist() == [3.0, 4.0, 0.0]  # the middle of the frames where each is present


def test_the_head_reads_the_windows_when_asked():
    head = TrackGrounding(text_dim=4, hidden=8, samples=3, crop=12).eval()
    plain = TrackGrounding(text_dim=4, hidden=8, samples=3)
    t = torch.zeros(2, 3, TRACK_DIM)
    crops = torch.rand(2, 2, 3, 12, 12)
    embeds = head.crop_embed(crops)
    assert embeds.shape == (2, 2, CROP_DIM)
    torch.testing.assert_close(head.crop_embed((crops * 255).round().to(torch.uint8)), embeds, atol=0.02, rtol=0.0)
    present = torch.tensor([[True, False], [False, False]])
    appearance = head.appearance(embeds, present)
    torch.testing.assert_close(appearance[0], embeds[0, 0])  # the frames where the mask is present
    assert (appearance[1] == 0).all()  # never present: nothing to read
    out = head.embed(t, appearance)
    assert out.shape == (2, 8) and not torch.equal(out[0], out[1])
    with pytest.raises(ValueError, match="appearance"):
        head.embed(t)
    with pytest.raises(ValueError, match="appearance"):
        plain.embed(t, appearance)
    with pytest.raises(ConfigError, match="crop"):
        tiny_config("vlm", *TRACK, "model.track.crop=-1")


def test_with_text_norm_the_score_reads_the_sentence_whatever_its_scale():
    torch.manual_seed(0)
    head = TrackGrounding(16, text_norm=True).eval()
    embeds, sentences = torch.randn(3, 64), torch.randn(2, 16)
    torch.testing.assert_close(head.score(embeds, 10 * sentences), head.score(embeds, sentences), atol=1e-4, rtol=1e-4)
    assert head.state_dict().keys() == TrackGrounding(16).state_dict().keys()  # no parameters: checkpoints alike
    plain = TrackGrounding(16).eval()
    plain.load_state_dict(head.state_dict())
    assert not torch.allclose(plain.score(embeds, 10 * sentences), plain.score(embeds, sentences))


@pytest.mark.parametrize("listwise", [0.0, 0.5])
def test_the_track_loss_is_the_mean_over_examples_of_each_examples_own_loss(listwise):
    """Examples of different sizes that share sentences: the loss over all pairs at once is each example's loss (its
    pairs' mean BCE, plus its sentences' ranking with listwise), averaged over the examples."""
    cfg = tiny_config("vlm", *SIZE, *TRACK, f"model.track.listwise={listwise}")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()  # the head's normalisation at its running statistics: examples alone agree
    examples = [TrackExample(torch.randn(3, 8, TRACK_DIM), ["the red square", "both squares"],
                             torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])),
                TrackExample(torch.randn(5, 8, TRACK_DIM), ["the green circle", "the red square", "a blue star"],
                             (torch.rand(3, 5) > 0.6).float()),
                TrackExample(torch.randn(1, 8, TRACK_DIM), ["both squares"], torch.zeros(1, 1))]
    loss = lambda e: track_bce(model.track_head, e, model.track_sentences, listwise)  # noqa: E731
    own = torch.stack([loss([e]) for e in examples]).mean()
    torch.testing.assert_close(loss(examples), own)


def test_the_listwise_term_ranks_a_sentences_tracks_against_each_other():
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.track.listwise=0.5")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    clip_tracks = torch.randn(3, 8, TRACK_DIM)
    sentences = ["the red square", "the green circle", "both squares"]
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    example = [TrackExample(clip_tracks, sentences, labels)]
    with_term = track_bce(model.track_head, example, model.track_sentences, 0.5)
    plain = track_bce(model.track_head, example, model.track_sentences, 0.0)
    head = model.track_head
    logits = head.score(head.embed(clip_tracks), model.track_text(model.prepare_text(sentences)))
    torch.testing.assert_close(plain, F.binary_cross_entropy_with_logits(logits, labels))
    # the sentence with no object among the tracks is not ranked; "both squares" spreads its target evenly
    ranked = F.cross_entropy(logits[[0, 2]], torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))
    torch.testing.assert_close(with_term - plain, 0.5 * ranked)
    with pytest.raises(ConfigError, match="listwise"):
        tiny_config("vlm", *TRACK, "model.track.listwise=-1")


def test_each_cell_goes_to_the_query_whose_logit_is_the_highest_there():
    left_out = -1e4  # a query off an object in its frame (the model's NO_MASK)
    masks = torch.tensor([[5.0, 5.0, -3.0, 4.0], [6.5, 2.0, -1.0, 4.0], [left_out] * 4])[None, :, None]  # (1, 3, 1, 4)
    out = exclusive_masks(masks)[0, :, 0]
    # cell 0 goes to query 1, cell 1 to query 0; cell 2 is no one's and keeps its logits under 0; both keep a tie
    assert out[0].tolist() == [-1.5, 5.0, -3.0, 4.0]
    assert out[1].tolist() == [6.5, -3.0, -1.0, 4.0]
    assert (out[2] < -9000).all()
    one = torch.randn(2, 1, 3, 3)
    assert torch.equal(exclusive_masks(one), one)


def test_a_second_peak_on_an_object_is_no_object():
    masks = torch.full((1, 5, 2, 16), -5.0)  # each query's mask, a band of columns
    for query, (start, stop) in enumerate([(0, 10), (2, 10), (10, 16), (3, 11), (0, 10)]):
        masks[0, query, :, start:stop] = 2.0
    # query 1 is on query 0's object (IoU 0.8); query 3 overlaps query 1 by 0.78 but query 0, the one kept, by 0.64;
    # query 2 is another object; query 4's peak is under the limit: it is no object whatever its mask
    peaks = torch.tensor([[0.9, 0.6, 0.5, 0.4, 0.1]])
    kept = suppress_duplicates(peaks, masks, limit=0.2, max_iou=0.7)[0]
    assert kept.tolist() == pytest.approx([0.9, 0, 0.5, 0.4, 0.1])
    assert torch.equal(suppress_duplicates(peaks, masks, limit=0.2, max_iou=0.8), peaks)
    # the order is the peaks': with query 1 the likeliest, query 0 and query 3 are its duplicates
    swapped = torch.tensor([[0.6, 0.9, 0.5, 0.4, 0.1]])
    kept = suppress_duplicates(swapped, masks, limit=0.2, max_iou=0.7)[0]
    assert kept.tolist() == pytest.approx([0, 0.9, 0.5, 0, 0.1])


def test_a_slot_is_labelled_with_the_object_it_covers():
    inst = torch.zeros(2, 2, 8, 8, dtype=torch.bool)
    inst[0, :, :4, :4] = True
    inst[1, :, 4:, 4:] = True
    slots = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    slots[0, :, :4, :3] = True  # most of object 0
    slots[1, :, 4:, :] = True  # object 1 and as much again
    assert slot_labels(slots, inst, 0.3).tolist() == [0, 1, -1]
    assert slot_labels(slots, inst[:0], 0.3).tolist() == [-1, -1, -1]


def clip_batch(model, instance_ids=True) -> ClipBatch:
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(2, 4, 3, 48, 64, generator=g) * 0.3
    instances = torch.zeros(2, 4, 48, 64, dtype=torch.bool)
    for t in range(4):
        instances[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = True
        instances[1, t, 28:44, 40:56] = True
    frames[:, :, 0][:, instances[0]] = 0.9
    frames[:, :, 2][:, instances[1]] = 0.9
    sentences = ["the red square moving right", "the blue square that stays"]
    ids = [("1", "2"), ("1", "2")] if instance_ids else None
    return ClipBatch(frames, model.prepare_text(sentences), sentences, [instances, instances],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v0", "v0"], ["0", "1"], 0, ids)


SPLIT = SimpleNamespace(videos={"v0": Video("v0", ("0",), {
    "0": Expression("0", "the red square moving right", ("1",), ("1",)),
    "1": Expression("1", "the blue square that stays", ("2",), ("2",)),
    "2": Expression("2", "both squares", ("1", "2"), ("1", "2")),
    "3": Expression("3", "the green circle", (), ())})})


@pytest.mark.parametrize("temporal, full, crop", [(True, False, 0), (False, False, 0), (True, True, 0),
                                                 (True, False, 12), (False, False, 12), (True, True, 12)])
def test_the_model_trains_on_every_sentence_of_the_video(temporal, full, crop):
    cfg = tiny_config("vlm", *SIZE, *TRACK, f"model.video_decoder.temporal={str(temporal).lower()}",
                      f"model.track.full_resolution={str(full).lower()}", f"model.track.crop={crop}")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    model.prepare_training(SPLIT)
    assert len(model.expressions["v0"]) == 4
    batch = clip_batch(model)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    losses = []
    for _ in range(15):
        parts = model.loss(model(batch), batch)
        assert torch.isfinite(parts["track"])
        opt.zero_grad()
        parts["track"].backward()
        opt.step()
        losses.append(parts["track"].item())
    assert losses[-1] < 0.7 * losses[0], losses
    # without the instances' ids (a batch of another source), the clip's own sentence
    assert torch.isfinite(model.loss(model(clip_batch(model, False)), clip_batch(model, False))["track"])


@pytest.mark.parametrize("temporal, full, crop", [(True, False, 0), (False, False, 0), (True, True, 0),
                                                 (True, False, 12), (False, False, 12), (True, True, 12)])
def test_the_session_selects_what_the_model_selects(temporal, full, crop):
    cfg = tiny_config("vlm", *SIZE, *TRACK, f"model.video_decoder.temporal={str(temporal).lower()}",
                      f"model.track.full_resolution={str(full).lower()}", f"model.track.crop={crop}")
    torch.manual_seed(3)
    model = build_model(cfg.model).eval()
    batch = clip_batch(model)
    with torch.no_grad():
        out = model(batch)
        expected = model.postprocess(out, 0.0)
        session = model.start_session(batch.text, 0.0)
        frames = model.pad(batch.frames[0])
        for start in (0, 2):  # two windows
            session.observe(frames[start:start + 2], start)
        session.decode()
        got = session.predict(frames, 0)
    torch.testing.assert_close(got[0].scores, expected[0].scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[0].logits, expected[0].logits, atol=1e-4, rtol=1e-4)  # the slots' frame masks
    slots = out["slot_logits"][0] if temporal else out["slot_logits"][:4, 0]  # clip 0: (T, Q, h, w)
    assert torch.equal(expected[0].logits.max(1).values > 0, slots.max(1).values > 0)  # every slot passes 0
    torch.testing.assert_close(session.probs[0][0], out["track_logits"][0].sigmoid(), atol=1e-5, rtol=1e-4)


def test_the_per_frame_control_scores_every_frame_alone():
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.video_decoder.temporal=false")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        out = model(clip_batch(model))
    assert out["track_logits"].shape == (8, 8)  # 2 clips x 4 frames, 8 slots
    assert out["slot_tracks"].shape[:2] == (8, 8)
    assert out["slot_tracks"][..., -2:].abs().max() < 1e-5  # a track of one frame has no step: no motion to read


def test_a_flipped_clip_reads_its_video_sentences_flipped():
    cfg = tiny_config("vlm", *SIZE, *TRACK)
    model = build_model(cfg.model)
    model.prepare_training(SPLIT)
    batch = clip_batch(model)
    batch.flipped = [True, False]
    flipped, _ = video_sentences(model.expressions, batch, 0)
    plain, flags = video_sentences(model.expressions, batch, 1)
    assert flipped[0] == "the red square moving left" and plain[0] == "the red square moving right"
    assert [f.tolist() for f in flags] == [[True, False], [False, True], [True, True], [False, False]]


def track_clips(flipped=(False, True)) -> TrackClips:
    """Two clips of video v0 read for the head alone: its two squares, and a speck that the mask grid cannot show."""
    frames = torch.rand(2, 4, 3, 46, 60, generator=torch.Generator().manual_seed(2)) * 0.3
    objects = torch.zeros(3, 4, 46, 60, dtype=torch.bool)
    for t in range(4):
        objects[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = True
        objects[1, t, 28:44, 40:56] = True
    objects[2, :, 0, 0] = True
    return TrackClips(frames, [objects, objects[[1, 0]]], [("1", "2", "3"), ("2", "1")], ["v0", "v0"], list(flipped))


def test_clips_read_for_the_head_are_their_objects_exact_tracks_labelled_by_their_videos_sentences():
    cfg = tiny_config("vlm", *SIZE, *TRACK)
    model = build_model(cfg.model)
    model.prepare_training(SPLIT)
    clips = track_clips()
    examples = clip_examples(clips, model.expressions, model.padded_frames, model.descriptor_frames, 8)
    assert [len(e.tracks) for e in examples] == [2, 2]  # the speck shows in no cell of the mask grid
    assert examples[0].labels.tolist() == [[1, 0], [0, 1], [1, 1], [0, 0]]
    assert examples[1].labels.tolist() == [[0, 1], [1, 0], [1, 1], [0, 0]]  # its objects in the other order
    assert examples[0].sentences[0] == "the red square moving right"
    assert examples[1].sentences[0] == "the red square moving left"  # a flipped clip
    # the same tracks as the model's own loss reads for the objects of a batch's clip (padded as the model pads)
    images = model.descriptor_frames(model.pad(clips.frames[0]))
    exact = frame_descriptors(images, on_mask_grid(model.pad(clips.instances[0][:2]), images.shape[-2:]).float()
                              .transpose(0, 1))
    torch.testing.assert_close(examples[0].tracks, tracks(exact[None], 8)[0])
    with pytest.raises(ValueError, match="no expressions.*prepare_training"):
        clip_examples(clips, {}, model.padded_frames, model.descriptor_frames, 8)


def test_the_model_trains_its_head_on_the_clips_read_for_it_too():
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.track.replay=8", "model.track.replay_draw=0")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    model.prepare_training(SPLIT)
    assert model.reads_track_clips
    batch = clip_batch(model)
    alone = model.loss(model(batch), batch)["track"]
    model.track_replay.examples.clear()
    batch.track_clips = track_clips()
    both = model.loss(model(batch), batch)["track"]
    assert len(model.track_replay) == 4 and torch.isfinite(both) and not torch.allclose(alone, both)
    assert model.track_replay.examples[2].tracks.shape[0] == 2  # the clips' examples: their objects alone
    assert not build_model(tiny_config("vlm", *SIZE, *TRACK, "model.track.crop=12").model).reads_track_clips
    per_frame = tiny_config("vlm", *SIZE, *TRACK, "model.video_decoder.temporal=false")
    assert not build_model(per_frame.model).reads_track_clips  # the control's head reads one frame at a time


def save(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("crop", [0, 12])
def test_the_replay_memory_scores_earlier_clips_again(crop):
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.track.replay=3", "model.track.replay_draw=2",
                      f"model.track.crop={crop}")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    model.prepare_training(SPLIT)
    batch = clip_batch(model)
    model.loss(model(batch), batch)
    assert len(model.track_replay) == 2  # the batch's two clips, detached on the CPU
    assert not model.track_replay.examples[0].tracks.requires_grad
    model.loss(model(batch), batch)
    assert len(model.track_replay) == 3  # the oldest dropped
    state = model.training_state()  # a checkpoint keeps the memory and its generator
    again = build_model(cfg.model)
    again.load_training_state(torch.load(save(state), weights_only=True))
    drawn = model.track_replay.draw(5)
    assert len(drawn) == 3 and all(e.labels.shape == (4, len(e.tracks)) for e in drawn)
    redrawn = again.track_replay.draw(5)
    assert [e.sentences for e in redrawn] == [e.sentences for e in drawn]
    assert all(torch.equal(a.tracks, b.tracks) and torch.equal(a.labels, b.labels) for a, b in zip(redrawn, drawn))
    if crop:  # each track's windows, stored as uint8 as frames are
        assert all(e.crops.dtype == torch.uint8 and e.crops.shape == (len(e.tracks), 2, 3, 12, 12) for e in drawn)
        assert all(torch.equal(a.crops, b.crops) and torch.equal(a.present, b.present) for a, b in zip(redrawn, drawn))
    else:
        assert all(e.crops is None for e in drawn)
    with pytest.raises(ConfigError, match="replay"):
        tiny_config("vlm", *TRACK, "model.track.replay=-1")


def test_the_best_slot_is_kept_whatever_its_probability():
    from rvos.models.meta.base import NO_MASK, union_of_queries

    probs = torch.tensor([[0.1, 0.45, 0.6], [0.1, 0.45, 0.1]])  # slot 2 passes 0.5 in frame 0, slot 1 is the best
    logits = torch.ones(2, 3, 4, 4)
    plain = union_of_queries(probs, logits, 0.5)
    kept = union_of_queries(probs, logits, 0.5, keep_best=True)
    assert plain.logits.shape[1] == 1 and kept.logits.shape[1] == 2  # slots 1 and 2
    assert (kept.logits[1, 1] == NO_MASK).all() and (kept.logits[:, 0] == 1).all()
    torch.testing.assert_close(kept.scores, torch.tensor([0.6, 0.45]))


def test_the_likeliest_slots_are_kept_as_many_as_the_sentence_refers_to():
    from rvos.models.meta.base import union_of_queries

    probs = torch.tensor([[0.9, 0.3, 0.6, 0.0], [0.9, 0.3, 0.6, 0.0]])  # slot 3 is no candidate (probability 0)
    logits = torch.ones(2, 4, 4, 4)
    one = union_of_queries(probs, logits, 0.5, keep_best=True, count=1)  # slot 2 passes 0.5, but one object is named
    assert one.logits.shape[1] == 1 and one.scores.tolist() == pytest.approx([0.9, 0.9])
    two = union_of_queries(probs, logits, 0.7, keep_best=True, count=2)  # slot 2 under 0.7, but two objects are named
    assert two.logits.shape[1] == 2
    assert union_of_queries(probs, logits, 0.95, keep_best=True, count=1).logits.shape[1] == 1
    # more than one: every slot over the threshold as well (a plural seldom says how many)
    assert union_of_queries(probs, logits, 0.2, keep_best=True, count=2).logits.shape[1] == 3
    assert union_of_queries(probs, logits, 0.5, keep_best=True, count=4).logits.shape[1] == 3  # never slot 3


def test_the_count_classifier_learns_how_many_objects_a_sentence_refers_to():
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.track.count=3")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    model.prepare_training(SPLIT)
    batch = clip_batch(model)
    # every expression of the clip's video, in video_sentences' order; "the green circle" refers to nothing here,
    # which the classifier reads as its first class (one object)
    assert video_counts(model.expressions, batch, 0) == [1, 1, 2, 0]
    assert video_counts(model.expressions, clip_batch(model, False), 1) == [1]  # the clip's own sentence
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    for _ in range(30):
        parts = model.loss(model(batch), batch)
        opt.zero_grad()
        parts["track_count"].backward()
        opt.step()
    assert parts["track_count"].item() < 0.1
    model.eval()
    counts = model.track_head.counts(model.track_sentences(["both squares", "the blue square that stays"]))
    assert counts.tolist() == [2, 1]
    with torch.no_grad():
        out = model(batch)
    assert out["object_counts"] == [1, 1]
    with pytest.raises(ConfigError, match="keep_best"):
        tiny_config("vlm", *TRACK, "model.track.count=3", "model.track.keep_best=false")


def test_with_a_count_the_session_selects_what_the_model_selects():
    cfg = tiny_config("vlm", *SIZE, *TRACK, "model.track.count=3")
    torch.manual_seed(3)
    model = build_model(cfg.model).eval()
    with torch.no_grad():
        model.track_head.count[-1].weight.zero_()
        model.track_head.count[-1].bias.copy_(torch.tensor([-9.0, 9.0, -9.0]))  # every sentence names two objects
        batch = clip_batch(model)
        out = model(batch)
        expected = model.postprocess(out, 0.99)
        session = model.start_session(batch.text, 0.99)
        frames = model.pad(batch.frames[0])
        session.observe(frames, 0)
        session.decode()
        got = session.predict(frames, 0)
    assert session.object_counts == [2, 2] and expected[0].logits.shape[1] == 2  # two slots, none over 0.99
    torch.testing.assert_close(got[0].logits, expected[0].logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[0].scores, expected[0].scores, atol=1e-5, rtol=1e-4)
