"""The frame decoder's query proposals (``model.frame_decoder.proposals``): heatmap targets and loss, peaks,
relative-coordinate mask term, linking by position, and the option in ``vlm``."""

import pytest
import torch

from rvos.config import load_config
from rvos.errors import ConfigError
from rvos.models.build import build_model
from rvos.models.modules.proposals import ProposalHead, centre_focal_loss, centre_heatmap
from rvos.models.modules.query_init import match_adjacent
from rvos.models.modules.track_grounding import slot_objectness

from test_contract import SIZE, clip_batch
from test_vlm import assert_windows_decode_as_one

PROPOSALS = [*SIZE, "model.frame_decoder.proposals=true"]


def test_the_heatmap_peaks_at_one_at_each_objects_centroid_cell():
    masks = torch.zeros(3, 32, 48, dtype=torch.bool)
    masks[0, 4:12, 8:16] = True  # 8x8 pixels: cells 1-2 x 2-3 at stride 4, centroid (2.5, 1.5) -> rounded (2, 2)
    masks[1, 16:32, 24:40] = True  # 16x16: cells 4-7 x 6-9, centroid (7.5, 5.5) -> (8, 6)
    heat = centre_heatmap(masks, (8, 12))  # the third object has no pixel
    assert heat.shape == (8, 12) and heat.max() == 1
    assert (heat == 1).nonzero().tolist() == [[2, 2], [6, 8]]
    assert heat[6, 9] > heat[2, 3]  # the bigger object's Gaussian is wider (sigma 1 against 0.5 cells)
    assert heat[0, 11] < 1e-6
    assert not centre_heatmap(masks[2:], (8, 12)).any()


def test_the_heatmaps_of_a_clips_frames_at_once_are_each_frames_own():
    torch.manual_seed(0)
    masks = torch.rand(3, 4, 32, 48) > 0.97  # scattered pixels: centroids and areas differ per object and frame
    masks[1, 2] = False  # an object absent from a frame
    masks[:, 3] = False  # a frame with no object
    heat = centre_heatmap(masks, (8, 12))
    assert heat.shape == (4, 8, 12)
    for t in range(4):
        assert torch.equal(heat[t], centre_heatmap(masks[:, t], (8, 12)))
    assert not heat[3].any()


def test_the_focal_loss_is_small_for_the_target_heatmap_and_counts_centres():
    target = torch.zeros(2, 8, 8)
    target[0, 2, 3] = target[1, 5, 5] = 1.0
    target[0, 2, 4] = 0.6
    right = torch.where(target == 1, 8.0, -8.0)[:, None]
    wrong = torch.where(target == 1, -8.0, 8.0)[:, None]
    assert centre_focal_loss(right, target) < 1e-3 < 10 < centre_focal_loss(wrong, target)
    # the loss is a sum divided by the number of centres: one frame's loss doubled, over two centres
    one = centre_focal_loss(wrong[:1], target[:1])
    both = centre_focal_loss(wrong[[0, 0]], torch.stack([target[0], target[0]]))
    torch.testing.assert_close(one, both)
    # near a centre the negative cells are forgiven: a high prediction at 0.6 costs less than far away
    near, far = torch.full((1, 1, 8, 8), -8.0), torch.full((1, 1, 8, 8), -8.0)
    near[0, 0, 2, 4] = far[0, 0, 6, 0] = 2.0
    assert centre_focal_loss(near, target[:1]) < centre_focal_loss(far, target[:1])


def test_peaks_are_distinct_local_maxima_best_first_and_the_relative_term_starts_as_a_bowl_at_the_peak():
    torch.manual_seed(0)
    head = ProposalHead(mask_dim=4, dim=8, num_queries=3)
    features = torch.randn(1, 4, 6, 10)
    with torch.no_grad():
        head.objectness[0].weight.zero_()
        head.objectness[0].bias.zero_()
        bias = torch.full((6, 10), -5.0)
        bias[1, 2], bias[1, 3], bias[4, 7], bias[3, 0] = 3.0, 2.0, 4.0, 1.0  # (1, 3) is beside the higher (1, 2)
        head.objectness[-1].bias.zero_()
    head.objectness.register_forward_hook(lambda m, i, o: o + bias)
    logits, anchors, objectness, content, pos = head(features)
    assert anchors[0].tolist() == [[7, 4], [2, 1], [0, 3]]  # (x, y), best first; (3, 1) is no local maximum
    torch.testing.assert_close(objectness[0], torch.tensor([4.0, 3.0, 1.0]).sigmoid())
    assert content.shape == pos.shape == (1, 3, 8)
    torch.testing.assert_close(content[0, 0], head.content(features[0, :, 4, 7]))
    term = head.mask_term(torch.randn(1, 3, 8), anchors, (6, 10))[0, 0]  # -(dx² + dy²) / 16 at the start
    assert term[4, 7] == 0 and term[0, 7] == -1 and term[4, 3] == -1 and term[0, 3] == -2


def test_a_pooled_heatmap_keeps_its_peaks_and_units_on_the_coarse_grid_of_a_finer_mask_grid():
    """With ``pool`` 2 (stride-2 mask features, ``encoder.fine``) the heatmap reads the mean of each 2 x 2 block, the
    peaks are cells of that coarse grid, and the relative term is centred on the peak's block of the mask grid, in
    coarse cells."""
    torch.manual_seed(0)
    head = ProposalHead(mask_dim=4, dim=8, num_queries=2, pool=2)
    features = torch.randn(1, 4, 12, 20)
    logits, anchors, _, content, _ = head(features)
    assert logits.shape == (1, 1, 6, 10) and (anchors[0, :, 0] < 10).all() and (anchors[0, :, 1] < 6).all()
    x, y = anchors[0, 0].long().tolist()
    block = features[0, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].mean((1, 2))
    torch.testing.assert_close(content[0, 0], head.content(block))
    term = head.mask_term(torch.randn(1, 1, 8), torch.tensor([[[5.0, 3.0]]]), (12, 20))[0, 0]
    # coarse cell (x 5, y 3) is fine cells x 10-11, y 6-7, whose centres lie a quarter of a coarse cell from its centre
    top = torch.tensor(-2 * 0.25**2 / 16)
    assert term.max() == top and (term[6:8, 10:12] == top).all()
    torch.testing.assert_close(term[6, 14], top - (1.75**2 - 0.25**2) / 16)  # fine cell 14: 2 coarse cells right of 10


def test_linking_reads_the_positions_of_identical_queries():
    """Two identical queries that swap places in the index: cosine alone cannot tell them apart, positions can."""
    queries = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]).expand(2, -1, -1)[None]  # (1, T=2, Q=3, 2)
    positions = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]],
                              [[5.2, 5.0], [0.1, 0.0], [9.0, 0.0]]])[None]
    perms = match_adjacent(queries, positions)
    assert perms[0, 1].tolist() == [1, 0, 2]


def test_vlm_with_proposals_learns_its_heatmap_and_windows_decode_as_one():
    torch.manual_seed(0)
    model = build_model(load_config("vlm_tiny_synth", PROPOSALS).model)
    batch = clip_batch(model)
    out = model(batch)
    assert out["frame_objectness"].shape == (8, 1, 16, 16)
    losses = model.loss(out, batch)
    assert losses["centre"] > 0
    losses["centre"].backward(retain_graph=True)
    assert model.frame_decoder.proposals.objectness[-1].weight.grad.abs().sum() > 0
    model.zero_grad()
    sum(v for k, v in losses.items() if k.startswith("frame_mask")).backward()
    assert model.frame_decoder.proposals.content.weight.grad.abs().sum() > 0  # the queries start from the peaks
    model.eval()
    sentences = model.prepare_text(["the red square", "the thing that moves left"])
    assert_windows_decode_as_one(model, model.pad(batch.frames[0]), sentences, 3)


def test_per_frame_control_with_proposals():
    model = build_model(load_config("vlm_tiny_synth", [*PROPOSALS, "model.video_decoder.temporal=false"]).model)
    batch = clip_batch(model)
    out = model(batch)
    assert out["frames_per_clip"] == 1 and torch.isfinite(sum(model.loss(out, batch).values()))


def test_proposals_and_propagated_queries_exclude_each_other():
    with pytest.raises(ConfigError, match="set one of them"):
        load_config("vlm_tiny_synth", [*PROPOSALS, "model.frame_decoder.propagate=true"])


def test_candidate_probs_drop_slots_under_the_objectness_limit_unless_none_passes():
    model = build_model(load_config("vlm_tiny_synth", [*PROPOSALS, "model.track.min_objectness=0.3"]).model)
    probs = torch.tensor([[0.9, 0.6, 0.2], [0.9, 0.6, 0.2]])
    objectness = torch.tensor([[0.1, 0.5, 0.4], [0.1, 0.2, 0.25]])
    expected = torch.tensor([[0.0, 0.6, 0.2], [0.9, 0.6, 0.2]])
    assert torch.equal(model.candidate_probs(probs, objectness), expected)


def test_a_slots_objectness_is_read_where_its_mask_shows():
    peaks = torch.tensor([[[0.9, 0.1], [0.8, 0.1], [0.1, 0.1], [0.1, 0.1]]])  # (B, T, Q): 4 frames, 2 queries
    presence = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # query 0 leaves after frame 1
    perms = torch.tensor([[[0, 1], [0, 1], [1, 0], [1, 0]]])  # frames 2 and 3 swap the queries' slots
    objectness = slot_objectness(peaks, perms, presence)
    # slot 0: frames 0 and 1 (where its mask shows), not the background peaks it follows while its object is gone;
    # slot 1 shows nowhere: the mean over the clip
    torch.testing.assert_close(objectness, torch.tensor([[0.85, 0.1]]))


def assert_the_session_selects_as_the_model(model, batch, out: dict):
    """A session observing the batch's first clip in two windows of 2 frames selects (threshold 0) what the model
    selects from ``out``; returns the model's selection of that clip."""
    with torch.no_grad():
        expected = model.postprocess(out, 0.0)
        session = model.start_session(batch.text, 0.0)
        frames = model.pad(batch.frames[0])
        for start in (0, 2):
            session.observe(frames[start:start + 2], start)
        session.decode()
        got = session.predict(frames, 0)
    torch.testing.assert_close(got[0].logits, expected[0].logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[0].scores, expected[0].scores, atol=1e-5, rtol=1e-4)
    return expected[0]


@pytest.mark.parametrize("temporal", [True, False])
def test_the_session_drops_the_slots_the_model_drops(temporal):
    torch.manual_seed(0)
    cfg = load_config("vlm_tiny_synth", [*PROPOSALS, f"model.video_decoder.temporal={str(temporal).lower()}",
                                         "model.track.link=adjacent",  # the limit changes no slot's masks
                                         "model.track.exclusive=false", "model.track.duplicate_iou=0"])
    model = build_model(cfg.model).eval()
    batch = clip_batch(model)
    with torch.no_grad():
        out = model(batch)
        objectness = out["slot_objectness"][0 if temporal else slice(0, 4)]
        model.cfg.track.min_objectness = float(objectness.median())  # about half the slots pass
    expected = assert_the_session_selects_as_the_model(model, batch, out)
    dropped = objectness < model.cfg.track.min_objectness
    assert dropped.any() and not dropped.all()
    kept = (expected.logits > -1e3).flatten(2).any(-1)  # (T, K) of the kept slots' masks
    assert kept.shape[1] == int((~dropped).sum(-1).max())


def test_linking_objects_needs_proposals_and_an_objectness_limit():
    with pytest.raises(ConfigError, match="min_objectness"):
        load_config("vlm_tiny_synth", ["model.track.link=objects", "model.track.min_objectness=0"])
    with pytest.raises(ConfigError, match="proposals"):
        load_config("vlm_tiny_synth", ["model.track.link=objects", "model.frame_decoder.proposals=false"])
    with pytest.raises(ConfigError, match="'adjacent' or 'objects'"):
        load_config("vlm_tiny_synth", ["model.track.link=peaks"])
    with pytest.raises(ConfigError, match="exclusive"):
        load_config("vlm_tiny_synth", ["model.track.link=adjacent", "model.track.duplicate_iou=0",
                                       "model.track.exclusive=true"])
    with pytest.raises(ConfigError, match="duplicate_iou"):
        load_config("vlm_tiny_synth", ["model.track.link=adjacent", "model.track.exclusive=false",
                                       "model.track.duplicate_iou=0.7"])
    with pytest.raises(ConfigError, match=r"duplicate_iou: expected an IoU in \[0, 1\)"):
        load_config("vlm_tiny_synth", ["model.track.duplicate_iou=1.0"])


@pytest.mark.parametrize("temporal", [True, False])
def test_linking_objects_empties_the_frames_where_a_slots_query_is_off_an_object(temporal):
    from rvos.models.meta.base import NO_MASK

    torch.manual_seed(0)
    cfg = load_config("vlm_tiny_synth", [*PROPOSALS, "model.track.link=objects", "model.track.exclusive=false",
                                         "model.track.duplicate_iou=0",  # the peaks read here are the proposals' own
                                         f"model.video_decoder.temporal={str(temporal).lower()}"])
    model = build_model(cfg.model).eval()
    batch = clip_batch(model)
    seen = []
    model.frame_decoder.proposals.register_forward_hook(lambda module, args, out: seen.append(out[2]))
    with torch.no_grad():
        model(batch)
        model.cfg.track.min_objectness = float(seen[-1].median())  # about half the queries are on an object
        out = model(batch)
    slots = out["slot_logits"].flatten(0, 1)  # (B*T, Q, h, w) in each frame's slot order
    queries = out["frame_masks"][-1]  # in each frame's query order
    on_object = model.on_object(seen[-1])  # (B*T, Q)
    assert on_object.any() and not on_object.all()
    # the slots hold each frame's queries in another order: the same masks, those of queries off an object emptied
    emptied = (slots == NO_MASK).flatten(2).all(-1)
    assert torch.equal(emptied.sum(1), (~on_object).sum(1))
    torch.testing.assert_close(torch.where(emptied[..., None, None], 0.0, slots).sum(1),
                               torch.where(on_object[..., None, None], queries, 0.0).sum(1))
    assert_the_session_selects_as_the_model(model, batch, out)


def with_and_without(option: str, on, off):
    """A random vlm_tiny_synth with ``model.track.<option>`` at ``on`` (about half its queries on an object) -> the
    model, a clip batch, its outputs, and its slots' logits with the option at ``off``."""
    torch.manual_seed(0)
    cfg = load_config("vlm_tiny_synth", [*PROPOSALS, f"model.track.{option}={str(on).lower()}"])
    model = build_model(cfg.model).eval()
    model.even_objectness_prior()
    batch = clip_batch(model)
    with torch.no_grad():
        out = model(batch)
        setattr(model.cfg.track, option, off)
        plain = model(batch)["slot_logits"]
        setattr(model.cfg.track, option, on)
    return model, batch, out, plain


def test_exclusive_slots_leave_each_cell_to_the_query_with_the_highest_logit_there():
    model, batch, out, plain = with_and_without("exclusive", True, False)
    slots = out["slot_logits"]
    assert ((plain > 0).sum(2) > 1).any()  # without it, slots overlap
    assert ((slots > 0).sum(2) <= 1).all()
    torch.testing.assert_close(slots.amax(2), plain.amax(2))  # the highest logit of a cell is kept
    assert_the_session_selects_as_the_model(model, batch, out)


def test_a_duplicate_proposal_is_no_object_in_training_as_in_a_session():
    model, batch, out, plain = with_and_without("duplicate_iou", 0.5, 0.0)
    shown = (out["slot_logits"] > 0).flatten(3).any(3)  # (B, T, Q) the slots with a mask in a frame
    assert shown.sum() < (plain > 0).flatten(3).any(3).sum()  # random queries' masks overlap: some are duplicates
    assert shown.any()
    assert_the_session_selects_as_the_model(model, batch, out)
