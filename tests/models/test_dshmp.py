"""DsHmp's own behaviour beyond the model contract: decoupled cues, the memory bank (updated by the loss, saved with
the model, sized against the training split), the contrastive ramp, the ablation switches, the selection rules,
the parameter groups, the paper configuration's parts, the bundled tiny tokenizer, and the CPU-size options: track
grounding of the clip queries or of the frame queries linked into slots, and those queries' masks at stride 2."""

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from rvos.config import load_config
from rvos.data.schema import Expression, Video
from rvos.engine.checkpoint import load_model, save_model
from rvos.errors import ConfigError
from rvos.models.build import build_model
from rvos.models.meta.base import ClipBatch, describe_model

SIZE = ["data.short_side=48", "data.max_long_side=64"]
SENTENCES = ["the red square moving quickly to the right", "the big blue square"]
SPLIT = SimpleNamespace(videos={"v0": Video("v0", ("0",), {"0": Expression("0", SENTENCES[0], ("1",), ("1",)),
                                                           "1": Expression("1", SENTENCES[1], ("2",), ("2",)),
                                                           "2": Expression("2", "the moving square", ("1",), ("1",))})})


def tiny(*overrides):
    cfg = load_config("dshmp_tiny_synth", [*SIZE, *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def batch(model, iteration=0, instance_ids=None) -> ClipBatch:
    g = torch.Generator().manual_seed(1)
    t_len, h, w = 4, 48, 64
    frames = torch.rand(2, t_len, 3, h, w, generator=g) * 0.3
    instances = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        instances[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = True
        instances[1, t, 28:44, 40:56] = True
    return ClipBatch(frames, model.prepare_text(SENTENCES), SENTENCES, [instances, instances],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v0", "v0"], ["0", "1"], iteration,
                     instance_ids)


def words_at(model, sentence, key):
    text = model.prepare_text([sentence])
    ids = text["input_ids"][0][text[key][0][: text["input_ids"].shape[1]]]
    return model.text_encoder.tokenizer.decode(ids).split()


def test_cue_maps_split_motion_words_from_static_ones():
    model, _ = tiny()
    assert words_at(model, SENTENCES[0], "motion") == ["moving", "quickly"]
    assert words_at(model, SENTENCES[0], "static") == ["the", "red", "square", "to", "the", "right"]
    text = model.prepare_text(SENTENCES)
    static, static_pad, motion, motion_pad = list(vars(model.encode_text(text)).values())[3:]
    assert (~motion_pad).sum(1).tolist() == [3, 1]  # two motion words + the sentence; the sentence alone
    assert (~static_pad).sum(1).tolist() == [7, 5]


def test_without_decoupling_both_cue_sets_hold_every_word():
    model, _ = tiny("model.text.decoupler=none")
    model.eval()
    text = model.prepare_text(SENTENCES)
    assert "motion" not in text
    enc = model.encode_text(text)
    torch.testing.assert_close(enc.static, enc.motion)
    assert (~enc.motion_padding).sum(1).tolist() == [(~enc.padding).sum(1)[i].item() + 1 for i in range(2)]


def test_the_loss_updates_the_bank_entries_of_its_expressions_and_the_bank_is_saved(tmp_path):
    model, cfg = tiny()
    model.train().prepare_training(SPLIT)
    before = model.memory_bank.features.clone()
    b = batch(model, iteration=10 ** 6)
    losses = model.loss(model(b), b)
    assert losses["contrastive"] > 0
    changed = (model.memory_bank.features != before).any(1).nonzero().flatten().tolist()
    assert changed == [0, 1]  # the two clips' expressions, nothing else
    save_model(tmp_path / "m", model, cfg)
    loaded, _ = load_model(tmp_path / "m")
    assert torch.equal(loaded.memory_bank.features, model.memory_bank.features)


def test_contrastive_weight_ramps_up_over_the_first_iterations():
    model, cfg = tiny()
    model.train().prepare_training(SPLIT)
    ramp = cfg.model.contrastive.ramp_iterations
    values = []
    for iteration in (0, ramp // 2, ramp, 10 * ramp):
        m = copy.deepcopy(model)
        torch.manual_seed(0)
        b = batch(m, iteration)
        values.append(float(m.loss(m(b), b)["contrastive"].detach()))
    assert values[0] == 0 and values[2] > 0
    assert values[1] == pytest.approx(values[2] / 2, rel=1e-5) and values[3] == pytest.approx(values[2], rel=1e-6)


def test_the_bank_must_hold_every_training_expression():
    model, _ = tiny("model.contrastive.entries=2")
    with pytest.raises(ConfigError, match="model.contrastive.entries=3"):
        model.prepare_training(SPLIT)


def test_the_contrastive_loss_without_the_split_says_what_to_do():
    model, _ = tiny()
    b = batch(model.train(), iteration=1)
    with pytest.raises(RuntimeError, match="prepare_training"):
        model.loss(model(b), b)


@pytest.mark.parametrize("overrides", [["model.motion.hmp_layers=0"], ["model.text.decoupler=none"],
                                       ["model.contrastive.weight=0"]])
def test_each_ablation_trains(overrides):
    model, _ = tiny(*overrides)
    model.train().prepare_training(SPLIT)
    b = batch(model, iteration=10)
    losses = model.loss(model(b), b)
    assert torch.isfinite(sum(losses.values()))
    assert ("contrastive" in losses) == ("model.contrastive.weight=0" not in overrides)
    if overrides == ["model.motion.hmp_layers=0"]:
        assert len(model.motion_decoder.hmp.ffn) == 0


def test_with_proposals_the_frame_queries_start_at_the_heatmaps_peaks():
    model, _ = tiny("model.frame_decoder.proposals=true")
    model.train().prepare_training(SPLIT)
    b = batch(model, iteration=10, instance_ids=[("1", "2"), ("1", "2")])
    out = model(b)
    assert out["frame_objectness"].shape == (8, 1, 16, 16)  # every frame's heatmap on the (padded) mask grid
    losses = model.loss(out, b)
    assert torch.isfinite(losses["centre"]) and losses["centre"] > 0
    sum(losses.values()).backward()
    assert model.frame_decoder.proposals.objectness[-1].weight.grad.abs().sum() > 0
    assert model.frame_decoder.proposals.relative.weight.grad.abs().sum() > 0  # the masks' relative term
    # a query's mask starts as the bowl around its peak: highest at the peak
    model.eval()
    with torch.no_grad():
        fo, _ = model.encode_frames(model.pad(b.frames[0]), model.encode_text(b.text).take(0, 4))
    decoder = model.frame_decoder
    bowl = decoder.proposals.mask_term(torch.zeros(4, 8, model.cfg.hidden_dim), fo["anchors"], (16, 16))
    x, y = fo["anchors"][0, 0].long().tolist()
    assert bowl[0, 0].argmax() == y * 16 + x
    assert load_config("dshmp_swin_t_mevis").model.frame_decoder.proposals is False  # the paper's learned queries


def test_selection_rules():
    model, _ = tiny()
    probs = torch.tensor([[0.9, 0.2, 0.7]]).expand(2, -1)
    logits = torch.full((2, 3, 4, 4), -1.0)
    logits[:, 0, 0, 0] = 2.0
    logits[:, 2, 1, 1] = 3.0
    union = model.select(probs, logits)
    assert (union.logits > 0).sum().item() == 4 and union.scores.tolist() == pytest.approx([0.9, 0.9])
    model.cfg.selection = "top1"
    top = model.select(probs, logits)
    assert (top.logits > 0).sum().item() == 2 and top.scores.tolist() == pytest.approx([0.9, 0.9])


# the clip queries as the track head's candidates (the tiny config links its frame queries into slots instead)
TRACK = ["model.track.enabled=true", "model.loss.instance_targets=true", "model.track.replay=4",
         "model.track.replay_draw=2", "model.track.link=adjacent", "model.track.min_objectness=0.0",
         "model.track.exclusive=false", "model.track.duplicate_iou=0.0", "model.pixel_decoder.fine=0"]


@pytest.mark.parametrize("full", [False, True])
def test_track_grounding_trains_the_clip_queries_score_on_every_sentence_of_the_video(full):
    model, cfg = tiny(*TRACK, f"model.track.full_resolution={str(full).lower()}")
    model.train().prepare_training(SPLIT)
    assert [t for t, _ in model.expressions["v0"]] == [*SENTENCES, "the moving square"]
    b = batch(model, iteration=10, instance_ids=[("1", "2"), ("1", "2")])
    out = model(b)
    assert out["track_logits"].shape == (2, 8) and out["slot_tracks"].shape[:2] == (2, 8)
    assert out["mask_images"].shape[-2:] == ((64, 64) if full else (16, 16))  # the frames, or at the mask grid
    assert torch.equal(out["slot_masks"], out["clip_masks"][-1, -2:] > 0)  # the last frame layer's clips
    losses = model.loss(out, b)
    assert torch.isfinite(losses["track"]) and len(model.track_replay) == 2
    # each clip's example: its 8 queries and the 2 objects' exact tracks, against the video's 3 sentences
    example = model.track_replay.examples[0]
    assert example.tracks.shape[0] == 10 and example.labels[:, 8:].tolist() == [[1, 0], [0, 1], [1, 0]]
    opt = torch.optim.AdamW(model.track_head.parameters(), 1e-2)
    first = None
    for _ in range(10):
        loss = model.loss(model(b), b)["track"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.7 * first
    again, _ = tiny(*TRACK)
    again.load_training_state(model.training_state())
    assert [e.sentences for e in again.track_replay.draw(4)] == [e.sentences for e in model.track_replay.draw(4)]
    assert describe_model(model)["selection"]["score"] == "track grounding (the clip queries' masks)"


OBJECTS = ["model.track.min_objectness=0.5", "model.track.exclusive=true"]


BLOBS, WHOLE = ["model.split_blobs=true"], ["model.split_blobs=false"]
# the frame queries linked into slots are the candidates (the tiny config's, at a higher objectness limit)
LINKED = ["model.frame_decoder.proposals=true", *WHOLE, "model.track.link=objects", "model.track.min_objectness=0.5",
          "model.track.exclusive=true", "model.track.duplicate_iou=0.7"]


@pytest.mark.parametrize("variant", [WHOLE, [*WHOLE, "model.track.full_resolution=true"], [*WHOLE, *OBJECTS], BLOBS,
                                     [*OBJECTS, *BLOBS], ["model.frame_decoder.proposals=true", *BLOBS], LINKED,
                                     [*LINKED, "model.pixel_decoder.fine=16"],
                                     [*LINKED, "model.track.full_resolution=true"]])
def test_with_track_grounding_the_session_selects_what_the_model_selects(variant):
    # the learned queries unless the variant says otherwise (the objectness rule is tried on their random start)
    model, _ = tiny(*TRACK, "model.frame_decoder.proposals=false", *variant)
    if model.links_objects:  # peaks near 0.5 at random weights, so that some frame queries are objects
        model.even_objectness_prior()
    model.eval()
    b = batch(model)
    with torch.no_grad():
        out = model(b)
        expected = model.postprocess(out, 0.5)
        session = model.start_session(b.text, 0.5)
        frames = model.pad(b.frames[1])
        for start in (0, 2):  # two windows: the tracks read every frame of the video
            session.observe(frames[start:start + 2], start)
        session.decode()
        got = session.predict(frames, 0)
    probs = model.candidate_probs(out["track_logits"].sigmoid(), out["objectness"])[1]
    k = len(session.probs[1])  # with blobs the forward pads clip 1's tracks to clip 0's count: no candidates
    assert (probs[k:] == 0).all() and (k >= 8 if variant[-1:] == BLOBS else k == 8)
    torch.testing.assert_close(session.probs[1], probs[:k], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1].scores, expected[1].scores, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[1].logits, expected[1].logits, atol=1e-4, rtol=1e-4)
    assert expected[1].logits.shape[1] >= 1  # the best query is kept whatever its probability
    if all(o in variant for o in OBJECTS) and not model.links_objects:  # some query is no object and one is, so
        # the rule is tried
        assert 0 < int((out["objectness"][1] >= 0.5).sum()) < out["objectness"].shape[1], out["objectness"]


@pytest.mark.parametrize("option", ["model.track.crop=12", "model.track.slot_weight=1.0",
                                    "model.track.duplicate_iou=0.5", "model.track.text=sentence"])
def test_track_options_of_linked_frame_queries_are_refused(option):
    extra = ["model.track.min_objectness=0.2"] if "duplicate" in option else []
    with pytest.raises(ConfigError, match=option.split("=")[0].split(".")[-1]):
        load_config("dshmp_tiny_synth", [*TRACK, *extra, option])
    with pytest.raises(ConfigError, match="min_objectness"):
        load_config("dshmp_tiny_synth", [*TRACK, "model.track.exclusive=true"])


def test_with_min_objectness_the_class_is_objectness_and_object_queries_share_the_cells():
    model, _ = tiny(*TRACK, *OBJECTS)
    masks = torch.full((1, 3, 1, 2, 4), -5.0)
    masks[0, 0, 0, :, :3] = torch.tensor([4.0, 3.0, 1.0])  # query 0 covers its object and spills onto the next
    masks[0, 1, 0, :, 2:] = torch.tensor([2.0, 4.0])  # query 1 is that next object
    masks[0, 2] = 6.0  # query 2 is no object: its mask is emptied whatever it covers
    out = model.object_masks(masks, torch.tensor([[0.9, 0.8, 0.1]]))
    assert (out[0, :, 0] > 0).tolist() == [[[True, True, False, False]] * 2, [[False, False, True, True]] * 2,
                                            [[False] * 4] * 2]
    probs = model.candidate_probs(torch.tensor([[0.2, 0.3, 0.9], [0.2, 0.3, 0.9]]),
                                  torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.1, 0.1]]))
    torch.testing.assert_close(probs, torch.tensor([[0.2, 0.3, 0.0], [0.2, 0.3, 0.9]]))  # none passes: all are
    # the class is trained as objectness: both objects' matched queries are positives, though one is referred
    model.train().prepare_training(SPLIT)
    b = batch(model, iteration=10, instance_ids=[("1", "2"), ("1", "2")])
    seen, criterion = [], model.criterion

    def spy(*args, labels=None, **kwargs):
        seen.append(labels)
        return criterion(*args, labels=labels, **kwargs)

    model.criterion = spy
    losses = model.loss(model(b), b)
    assert seen and all(labels is None for labels in seen) and torch.isfinite(losses["track"])


def test_the_bag_of_tokens_is_the_mean_of_the_words_token_embeddings():
    model, _ = tiny()
    encoder = model.text_encoder
    text = encoder.tokenize(["the red square", "a much longer sentence about the red square"])
    table = encoder.model.get_input_embeddings().weight
    ids = encoder.tokenizer("the red square", add_special_tokens=False)["input_ids"]
    bag = encoder.bag_of_tokens(text)
    torch.testing.assert_close(bag[0], table[ids].mean(0))  # no start, end or padding token
    torch.testing.assert_close(encoder.bag_of_tokens(encoder.tokenize(["the red square"]))[0], bag[0])


def test_parameter_groups_put_the_fusion_layers_with_the_head():
    model, _ = tiny()
    group = model.parameter_group
    assert group("backbone.layers.0.blocks.0.attn.qkv.weight") == "backbone"
    assert group("backbone.patch_embed.proj.weight") == "backbone"
    assert group("backbone.layers.0.fusion.image_lang_att.W.weight") == "head"
    assert group("backbone.layers.0.res_gate.0.weight") == "head"
    assert group("text_encoder.model.embeddings.word_embeddings.weight") == "text"
    assert group("motion_decoder.hmp.cross.0.to_q.weight") == "head"


def test_paper_config_has_the_papers_parts_and_a_frozen_text_encoder(tmp_path):
    """roberta-base's architecture (random weights: nothing is downloaded here) with the bundled tokenizer."""
    from transformers import RobertaConfig

    from rvos.models.backbones.hf_text import BUNDLED

    folder = tmp_path / "roberta-base-shaped"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((BUNDLED / "rvos-tiny-roberta" / name).read_bytes())
    RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1).save_pretrained(folder)
    cfg = load_config("dshmp_swin_t_mevis", [f"model.text.model={folder}"])
    model = build_model(cfg.model, load_pretrained=False)
    report = describe_model(model)
    assert report["text_encoder"]["parameters"] == 124_645_632 and report["text_encoder"]["trainable"] == 0
    assert report["backbone"]["channels"] == [96, 192, 384, 768]
    assert report["frame_decoder"]["queries"] == 20 and report["frame_decoder"]["layers"] == 9
    assert report["motion_decoder"] | {"parameters": 0, "trainable": 0, "frozen": 0} == {
        "parameters": 0, "trainable": 0, "frozen": 0, "hmp_layers": 6, "layers": 3, "queries": 10, "window": 8}
    assert model.memory_bank.features.shape == (23051, 256)
    assert model.cfg.loss.similarity_weight == 1.0 and cfg.train.grad_clip == 0.01
    json.dumps(report)


def test_the_bundled_tiny_tokenizer_is_what_its_script_writes(tmp_path):
    from rvos.text.tiny_roberta import BUNDLED, write_tiny_roberta

    write_tiny_roberta(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((BUNDLED / name).read_text())
    written = json.loads((tmp_path / "config.json").read_text())
    bundled = json.loads((BUNDLED / "config.json").read_text())
    assert {k: v for k, v in written.items() if k != "transformers_version"} == {
        k: v for k, v in bundled.items() if k != "transformers_version"}


def test_blob_tracks_cut_a_querys_masks_into_one_track_per_object():
    """Query 0 covers two look-alikes moving apart (and a one-cell speck in frame 1, left out); the right one is hidden
    in frame 2 and back in frame 3 near where it was. Query 1 shows nothing: one empty track of its own."""
    from rvos.models.modules.track_grounding import blob_masks, blob_tracks

    t_len, h, w = 4, 10, 20
    masks = torch.full((2, t_len, h, w), -3.0)
    left, right = torch.zeros(t_len, h, w, dtype=torch.bool), torch.zeros(t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        left[t, 2:5, 6 - t:9 - t] = True
        if t != 2:
            right[t, 5:8, 11 + t:14 + t] = True
    masks[0][left | right] = 2.0
    masks[0, 1, 0, 19] = 2.0
    owners, where = blob_tracks(masks)
    assert owners.tolist() == [0, 0, 1]
    assert torch.equal(where[0], left) and torch.equal(where[1], right) and not where[2].any()
    logits = blob_masks(masks, owners, where)  # (K, T, h, w)
    torch.testing.assert_close(logits[1][right], masks[0][right])
    torch.testing.assert_close(logits[1][~right], -masks[0][~right].abs())  # the left look-alike's cells too
    assert "blobs" in describe_model(tiny(*TRACK, *BLOBS)[0])["selection"]["candidates"]
    with pytest.raises(ConfigError, match="split_blobs.*track.enabled"):
        load_config("dshmp_tiny_synth", ["model.track.enabled=false", "model.split_blobs=true",
                                         "model.pixel_decoder.fine=0"])


def test_frame_queries_on_an_object_keep_their_masks_and_a_duplicate_is_none():
    model, _ = tiny(*TRACK, *LINKED)
    masks = torch.full((1, 4, 2, 4), -5.0)
    masks[0, 0, :, :2] = 3.0  # query 0: the left object
    masks[0, 1, :, :2] = 2.0  # query 1: the same object, a weaker peak (a duplicate)
    masks[0, 2, :, 1:] = torch.tensor([1.0, 4.0, 4.0])  # query 2: the right object, spilling onto the left one
    masks[0, 3] = 6.0  # query 3: its peak is no object
    fo = {"masks": [masks], "peaks": torch.tensor([[0.9, 0.7, 0.8, 0.3]])}
    out, peaks = model.object_frame_masks(fo)
    assert peaks[0].tolist() == pytest.approx([0.9, 0.0, 0.8, 0.3])
    assert (out[0] > 0).tolist() == [[[True, True, False, False]] * 2, [[False] * 4] * 2,
                                     [[False, False, True, True]] * 2, [[False] * 4] * 2]


def test_with_linked_frame_queries_the_slots_are_the_track_heads_candidates():
    model, _ = tiny(*TRACK, *LINKED)
    model.even_objectness_prior()  # peaks near 0.5 at random weights
    model.train().prepare_training(SPLIT)
    b = batch(model, iteration=10, instance_ids=[("1", "2"), ("1", "2")])
    out = model(b)
    assert out["slot_logits"].shape == (2, 8, 4, 16, 16) and out["track_logits"].shape == (2, 8)
    assert torch.equal(out["slot_masks"], out["slot_logits"] > 0) and out["objectness"].shape == (2, 8)
    losses = model.loss(out, b)
    assert torch.isfinite(losses["track"]) and not model.objectness_scores  # the class is trained as the official
    losses["track"].backward()
    assert model.track_head.frame[0].weight.grad.abs().sum() > 0
    model.eval()  # each frame's slot masks are its object queries' masks in another order
    with torch.no_grad():
        slots = model(b)["slot_logits"].transpose(1, 2).flatten(0, 1)  # (B*T, Q, h, w)
        text = model.encode_text(b.text)
        fo, _ = model.encode_frames(model.pad(b.frames.flatten(0, 1)), text.repeat(4))
        masks, peaks = model.object_frame_masks(fo)
    assert 0 < int((peaks >= 0.5).sum()) and (masks > 0).any()
    torch.testing.assert_close(slots.sort(1).values, masks.sort(1).values)
    assert describe_model(model)["selection"]["score"] == "track grounding (the frame queries linked as objects)"
    with pytest.raises(ConfigError, match="frame_decoder.proposals"):
        load_config("dshmp_tiny_synth", [*TRACK, *LINKED, "model.frame_decoder.proposals=false"])
    with pytest.raises(ConfigError, match="split_blobs"):
        load_config("dshmp_tiny_synth", [*TRACK, *LINKED, "model.split_blobs=true"])


def test_with_a_fine_stem_the_frame_queries_masks_are_at_stride_2():
    model, _ = tiny(*TRACK, *LINKED, "model.pixel_decoder.fine=16")
    model.even_objectness_prior()
    model.train().prepare_training(SPLIT)
    b = batch(model, iteration=10, instance_ids=[("1", "2"), ("1", "2")])
    out = model(b)
    assert model.mask_stride == 2 and out["frame_masks"][-1].shape[-2:] == (32, 32)  # 48 x 64 padded to 64 x 64
    assert out["slot_logits"].shape[-2:] == (32, 32) and out["mask_images"].shape[-2:] == (32, 32)
    assert out["frame_objectness"].shape[-2:] == (16, 16)  # the heatmap stays at stride 4
    assert out["clip_masks"].shape[-2:] == (16, 16)  # the motion decoder's, trained but not output
    losses = model.loss(out, b)
    sum(losses.values()).backward()
    assert model.fine_proj.weight.grad.abs().sum() > 0  # the stem's map starts at zero and learns from the masks
    with pytest.raises(ConfigError, match="pixel_decoder.fine.*link=objects"):
        load_config("dshmp_tiny_synth", [*TRACK, "model.pixel_decoder.fine=16"])
