"""MUTR's parts: MTI's windowed encoder (plain windows in training, shifted odd layers at inference) and decoder
(learned or given initial video queries), MTA's shared layer, the dynamic head with one output channel, the
cross-modal FPN's shapes, the model's per-layer training outputs and losses, and the report's instance-mask query
initialisation (order matters; without instances the model is plain MUTR)."""

import pytest
import torch

from rvos.errors import ConfigError
from rvos.models.layers.dynamic_conv import DynamicMaskHead
from rvos.models.meta.base import ClipBatch
from rvos.models.meta.mutr import TextAggregation
from rvos.models.modules.cross_modal_fpn import CrossModalFPN
from rvos.models.modules.temporal_interaction import TemporalInteraction

from contract import MUTR_OFFICIAL_PATH, tiny_config


def test_mti_windows_in_training_and_shifted_windows_at_inference():
    torch.manual_seed(0)
    mti = TemporalInteraction(16, frame_queries=2, queries=3, heads=2, ffn=32, enc_layers=2, dec_layers=1, window=4,
                              dropout=0.0)
    x = torch.randn(1, 8, 2, 16)
    changed = x.clone()
    changed[0, 6] += 1.0  # a frame of the second window
    for mode, affected in ((True, []), (False, [2, 3])):
        mti.train(mode)
        a, b = mti.encoder(x), mti.encoder(changed)
        same = [t for t in range(4) if torch.allclose(a[0, t], b[0, t], atol=1e-6)]
        # plain windows: the first window never sees frame 6; shifted (layer 2): frames 2, 3 share a window with
        # 4, 5, which saw frame 6 in layer 1; frames 0, 1 share theirs with 6, 7 across the wrap-around, blocked
        assert sorted(set(range(4)) - set(same)) == affected, mode


def test_mti_decoder_starts_from_learned_or_given_queries():
    torch.manual_seed(0)
    mti = TemporalInteraction(16, frame_queries=2, queries=3, heads=2, ffn=32, enc_layers=1, dec_layers=2, window=4,
                              dropout=0.0).eval()
    frames = torch.randn(2, 5, 2, 16)
    learned = mti(frames)
    assert learned.shape == (2, 3, 16)
    start = mti.query_feat.weight[None].expand(2, -1, -1)
    torch.testing.assert_close(mti(frames, start), learned)
    assert not torch.allclose(mti(frames, start + 1.0), learned)


def test_mta_layer_is_post_norm_attention_then_ffn():
    torch.manual_seed(0)
    mta = TextAggregation(16, 2, 32).eval()
    words, pos, visual = torch.randn(2, 5, 16), torch.randn(2, 5, 16), torch.randn(2, 12, 16)
    padding = torch.zeros(2, 12, dtype=torch.bool)
    padding[1, 6:] = True
    out = mta(words, pos, visual, padding)
    attn = mta.attn.attn(words + pos, visual, visual, key_padding_mask=padding)[0]
    x = mta.attn.norm(words + attn)
    expected = mta.ffn.norm(x + mta.ffn.linear2(torch.relu(mta.ffn.linear1(x))))
    torch.testing.assert_close(out, expected)
    visual[1, 6:] = 100.0  # padded tokens are never read
    torch.testing.assert_close(mta(words, pos, visual, padding), out)


def test_dynamic_head_ends_in_one_mask_logit():
    head = DynamicMaskHead(12, in_channels=8, channels=8, layers=3, stride=4, out_channels=1)
    assert head.weight_sizes == [10 * 8, 8 * 8, 8 * 1] and head.bias_sizes == [8, 8, 1]
    out = head(torch.randn(2, 8, 6, 10), torch.randn(2, 5, 12), torch.rand(2, 5, 2) * 30)
    assert out.shape == (2, 5, 1, 6, 10)


def test_cross_modal_fpn_gives_stride_4_mask_features():
    fpn = CrossModalFPN([6, 16, 16, 16], dim=16, mask_dim=8, heads=2, ffn=32, norm_groups=8)
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3)]
    n, t_len = 4, 2  # two clips of two frames
    maps = [torch.randn(n, c, *s) for c, s in zip([6, 16, 16, 16], sizes)]
    poss = [torch.randn(n, 16, *s) for s in sizes]
    pads = [torch.zeros(n, *s, dtype=torch.bool) for s in sizes]
    words = torch.randn(2, 5, 16)
    out = fpn(maps, poss, pads, t_len, words, torch.randn(2, 5, 16), torch.zeros(2, 5, dtype=torch.bool))
    assert out.shape == (4, 8, 16, 24)


def test_training_supervises_every_layer_and_inference_reads_the_last_layer_with_the_first_or_last_heads():
    from rvos.models.build import build_model

    cfg = tiny_config("mutr", *MUTR_OFFICIAL_PATH)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    batch = _batch(model)
    out = model(batch)
    layers, q = cfg.model.transformer.dec_layers, cfg.model.queries
    assert out["logits"].shape == (layers, 2, q) and out["masks"].shape == (layers, 2, 4, q, 16, 24)
    losses = model.loss(out, batch)
    expected = {"class", "box", "giou", "mask", "dice"}
    assert set(losses) == expected | {f"{k}_{i}" for k in expected for i in range(layers - 1)}
    sum(losses.values()).backward()
    assert model.mti.query_feat.weight.grad.abs().sum() > 0 and model.mta.attn.attn.in_proj_weight.grad is not None
    model.eval()
    for box in model.bbox_embed:  # zero at the start: every layer's boxes would be the first's
        torch.nn.init.normal_(box.layers[-1].weight, std=0.5)
    seen = {}
    hooks = [model.transformer.decoder.register_forward_hook(lambda m, i, o: seen.update(hs=o[0], boxes=o[1])),
             model.mti.register_forward_hook(lambda m, i, o: seen.update(mti=(i[0], o))),
             model.mask_head.register_forward_hook(lambda m, i, o: seen.update(points=i[2]))]
    with torch.no_grad():
        out = model(batch)
    # the official pairing: MTI on the last decoder layer's frame queries, read by the first class head, with the
    # first layer's boxes (their centres the mask head's reference points)
    frame_queries, video = seen["mti"]
    torch.testing.assert_close(frame_queries, seen["hs"][-1].view(2, 4, q, -1))
    assert out["logits"].shape == (1, 2, q) and out["boxes"].shape == (1, 2, 4, q, 4)
    torch.testing.assert_close(out["logits"][0], model.class_embed[0](video)[..., 0])
    scale = torch.tensor([96.0, 64.0])
    torch.testing.assert_close(out["boxes"][0], seen["boxes"][0].view(2, 4, q, 4))
    torch.testing.assert_close(seen["points"], seen["boxes"][0][..., :2] * scale)
    # infer_heads "last": the last layer's heads and boxes read them, as training pairs each layer's
    model.cfg.infer_heads = "last"
    with torch.no_grad():
        last = model(batch)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["mti"][1], video)
    torch.testing.assert_close(last["logits"][0], model.class_embed[-1](video)[..., 0])
    torch.testing.assert_close(last["boxes"][0], seen["boxes"][-1].view(2, 4, q, 4))
    torch.testing.assert_close(seen["points"], seen["boxes"][-1][..., :2] * scale)
    assert not torch.allclose(seen["boxes"][0], seen["boxes"][-1])
    assert not torch.allclose(last["masks"], out["masks"])


def test_proposals_start_each_frames_queries_at_its_heatmap_peaks_linked_over_the_clip_before_mti(monkeypatch):
    """With ``model.proposals`` the decoder's first reference points are the peaks of the heatmap on the stride-4 mask
    features (cell centres, in [0, 1]), its positions their embeddings; each clip's frame queries (every layer's, and
    their boxes) reach MTI and the mask head in the order the linking gives them, in training and at inference;
    the heatmap learns the targets' centres (``centre``)."""
    from rvos.models.build import build_model
    from rvos.models.modules.query_init import reorder

    cfg = tiny_config("mutr", *MUTR_OFFICIAL_PATH, "model.proposals=true")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    # the heatmap's prior at 0.5 (0.1 when built): random peaks under link_objectness are no objects, and leave the
    # frames' queries in their order
    torch.nn.init.zeros_(model.proposals.objectness[-1].bias)
    seen, proposed, linked = {}, [], []
    decode, link = model.transformer.decode, model.link_queries

    def spy(*args, **kwargs):
        seen.update(kwargs, pos=args[1])
        hs, boxes = decode(*args, **kwargs)
        seen.update(hs=hs, boxes=boxes)
        return hs, boxes

    model.transformer.decode = spy
    model.proposals.register_forward_hook(lambda module, inputs, output: proposed.append(output))
    model.mti.register_forward_hook(lambda module, inputs, output: seen.update(mti=inputs[0]))
    monkeypatch.setattr(model, "link_queries", lambda *args: linked.append(link(*args)) or linked[-1])
    batch = _batch(model)
    out = model(batch)
    q = cfg.model.queries
    heatmap, anchors, _, _, pos = proposed[-1]
    assert heatmap.shape == (8, 1, 16, 24) and anchors.shape == (8, q, 2)
    torch.testing.assert_close(seen["reference"], (anchors + 0.5) / torch.tensor([24.0, 16.0]))
    assert seen["pos"] is pos and len(set(map(tuple, anchors[0].tolist()))) == q  # distinct peaks
    perms = linked[-1]
    assert perms.shape == (2, 4, q) and not torch.equal(perms, torch.arange(q).expand(2, 4, q))
    layers = cfg.model.transformer.dec_layers
    torch.testing.assert_close(seen["mti"], reorder(seen["hs"][-1].view(2, 4, q, -1), perms))
    torch.testing.assert_close(out["boxes"], torch.stack([reorder(x.view(2, 4, q, 4), perms)
                                                          for x in seen["boxes"]]))
    losses = model.loss(out, batch)
    assert out["boxes"].shape[0] == layers and torch.isfinite(losses["centre"]) and losses["centre"] > 0
    sum(losses.values()).backward()
    for part in (model.proposals.objectness[0], model.proposals.content, model.proposals.pos):
        assert part.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(linked) == 2 and "objectness" in out
    torch.testing.assert_close(out["boxes"][0], reorder(seen["boxes"][0].view(2, 4, q, 4), linked[-1]))


def test_linking_by_objects_follows_an_objects_colour_where_boxes_jump_and_drops_background_and_second_boxes():
    """Two frames far apart in a clip: the red and the green block swap places, so their boxes overlap the other's
    last box; a query on the background (a weak peak) and a second box on the red block (a weaker peak) are no
    objects. ``model.link`` "boxes" follows the boxes and swaps the blocks; "objects" follows their colours."""
    from rvos.models.build import build_model
    from rvos.models.modules.query_init import reorder

    model = build_model(tiny_config("mutr", "model.proposals=true", "model.link=objects").model).eval()
    h, w = 64, 128
    left, right = [0.25, 0.5, 0.2, 0.3], [0.75, 0.5, 0.2, 0.3]
    # (T, slot, 4): the red block, the green block, the background, a second box on the red block
    truth = torch.tensor([[left, right, [0.5, 0.1, 0.1, 0.1], [0.26, 0.5, 0.2, 0.3]],
                          [right, left, [0.5, 0.9, 0.1, 0.1], [0.74, 0.5, 0.2, 0.3]]])
    peaks = torch.tensor([0.9, 0.8, 0.05, 0.6])  # per slot
    frames = torch.zeros(2, 3, h, w)
    for t in range(2):
        for box, channel in zip(truth[t, :2], (0, 1)):
            x0, y0 = int((box[0] - box[2] / 2) * w), int((box[1] - box[3] / 2) * h)
            frames[t, channel, y0:y0 + int(box[3] * h), x0:x0 + int(box[2] * w)] = 1.0
    order = torch.tensor([[0, 1, 2, 3], [1, 3, 0, 2]])  # frame t's query k is slot order[t, k]
    boxes = torch.stack([truth[t, order[t]] for t in range(2)])[None]
    queries = torch.randn(16).expand(1, 2, 4, 16)  # alike: the boxes, places and colours decide
    linked = reorder(boxes, model.link_queries(boxes, queries, peaks[order][None], frames[None]))[0]
    torch.testing.assert_close(linked[:, :2], truth[:, :2])  # each block its slot
    model.cfg.link = "boxes"
    swapped = reorder(boxes, model.link_queries(boxes, queries, peaks[order][None], frames[None]))[0]
    torch.testing.assert_close(swapped[1, :2], torch.tensor([left, right]))
    with pytest.raises(ConfigError, match="model.link"):
        tiny_config("mutr", "model.link=masks")
    with pytest.raises(ConfigError, match="model.link_objectness"):
        tiny_config("mutr", "model.link_objectness=1.5")


def _batch(model):
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 4, 3, 64, 96, generator=g)
    inst = torch.zeros(2, 4, 64, 96, dtype=torch.bool)
    inst[0, :, 8:30, 10:40] = True
    inst[1, :2, 36:60, 50:80] = True
    sentences = ["the red block", "the block that leaves"]
    return ClipBatch(frames, model.prepare_text(sentences), sentences, [inst, inst],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v", "v"], ["0", "1"])


def test_instance_block_reads_instances_in_order_and_without_them_changes_nothing():
    from rvos.models.modules.instance_queries import InstanceQueryInit

    torch.manual_seed(0)
    block = InstanceQueryInit([8, 16], dim=16, heads=2, ffn=32).eval()
    queries, pos = torch.randn(3, 16), torch.randn(3, 16)
    tokens = block.tokens([torch.randn(2 * 4, 8, 6, 6), torch.randn(2 * 4, 16, 3, 3)], instances=2)
    assert tokens.shape == (2, 4 * 2, 16)  # per instance: frames x levels
    a, b = block(queries, pos, tokens), block(queries, pos, tokens.flip(0))
    assert a.shape == (3, 16) and not torch.allclose(a, b)  # sequential: the order matters
    torch.testing.assert_close(block(queries, pos, tokens[:0]), queries)  # no instance: the learned start


def test_instance_queries_start_mti_from_the_clips_objects_in_training_and_inference():
    import numpy as np

    from rvos.data.video import VideoSource
    from rvos.engine.inference import Predictor
    from rvos.errors import ConfigError
    from rvos.models.build import build_model

    cfg = tiny_config("mutr", "model.instances.enabled=true", "data.short_side=64", "data.max_long_side=96")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    frames = torch.rand(1, 4, 3, 64, 96)
    inst = torch.zeros(2, 4, 64, 96, dtype=torch.bool)
    inst[0, :, 8:30, 10:40] = True
    inst[1, :, 36:60, 50:80] = True
    text = model.encode_text(model.prepare_text(["the red block"]))
    with torch.no_grad():
        model.eval()
        plain = model.encode_clips(frames, text, [-1])["logits"]
        seeded = model.encode_clips(frames, text, [-1], [inst])["logits"]
        swapped = model.encode_clips(frames, text, [-1], [inst.flip(0)])["logits"]
        none = model.encode_clips(frames, text, [-1], [inst[:0]])["logits"]
    assert not torch.allclose(seeded, plain) and not torch.allclose(seeded, swapped)
    torch.testing.assert_close(none, plain)
    # through the Predictor: instance masks at the video's size, resized with the frames
    video_frames = np.random.default_rng(0).integers(0, 255, (4, 128, 192, 3), dtype=np.uint8)
    video = VideoSource(4, (128, 192), lambda idx: video_frames[list(idx)], "clip")
    big = torch.nn.functional.interpolate(inst.float(), size=(128, 192)).bool().numpy()
    results = list(Predictor(model, cfg).predict(video, ["the red block"], instances=lambda idx: big[:, list(idx)]))
    assert len(results) == 4 and results[0].masks.shape == (1, 128, 192)
    plain_model = build_model(tiny_config("mutr").model).eval()
    with pytest.raises(ConfigError, match="no instance block"):
        list(Predictor(plain_model, cfg).predict(video, ["the red block"], instances=lambda idx: big[:, list(idx)]))


def test_split_inference_and_diagnosis_read_the_annotated_objects_as_instances(tmp_path):
    """infer.instances=annotated: each window's visible annotated objects are the instances (the synthetic
    benchmark's stand-in for a VIS model), in rvos infer's split prediction and in the diagnosis alike."""
    from layouts import write_mevis

    from rvos.engine.diagnose import diagnose
    from rvos.engine.inference import Predictor
    from rvos.engine.predict_split import predict_split, split_instances
    from rvos.data.splits import open_split
    from rvos.models.build import build_model

    write_mevis(tmp_path, size=(48, 64), frames=3)
    split = open_split(tmp_path / "valid_u")
    masks = split_instances(tiny_config("mutr", "infer.instances=annotated").infer, split)("v1")(range(1, 3))
    assert masks.shape == (1, 2, 48, 64)  # object 2 is absent from frames 1 and 2: only object 1 is an instance
    cfg = tiny_config("mutr", "model.instances.enabled=true", "infer.instances=annotated", "data.short_side=48",
                      "data.max_long_side=64")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    seen = []
    hook = model.instance_init.register_forward_hook(lambda m, i, o: seen.append(i[2].shape[0]))
    assert predict_split(Predictor(model, cfg), tmp_path / "valid_u", tmp_path / "pred", progress=False) == 1
    assert seen and all(k == 2 for k in seen)  # both objects are visible in the one window of 3 frames
    seen.clear()
    rows = diagnose(model, cfg, tmp_path / "valid_u", progress=False)
    hook.remove()
    assert seen and set(rows) == {"model", "top1", "oracle", "ceiling"}


def test_rvos_infer_reads_a_vis_models_results_as_instances(tmp_path):
    """``rvos infer --instances RESULTS --instance-videos VIDEOS``: a YouTube-VIS results file (DVIS's output) gives
    the instances; a file about another video is refused before anything is predicted."""
    import json

    import numpy as np
    from layouts import write_mevis
    from pycocotools import mask as coco_mask

    from rvos.cli import main
    from rvos.engine.checkpoint import save_model
    from rvos.models.build import build_model

    objects = write_mevis(tmp_path, size=(48, 64), frames=3)
    cfg = tiny_config("mutr", "model.instances.enabled=true", "data.short_side=48", "data.max_long_side=64")
    torch.manual_seed(0)
    save_model(tmp_path / "m", build_model(cfg.model).eval(), cfg)
    videos = {"videos": [{"id": 7, "file_names": [f"v1/{t:05d}.jpg" for t in range(3)], "height": 48, "width": 64}]}
    def rle(mask):
        encoded = coco_mask.encode(np.asfortranarray(mask))
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}

    results = [{"video_id": 7, "score": 0.9, "category_id": 1, "segmentations": [rle(m) for m in objects["1"]]}]
    (tmp_path / "videos.json").write_text(json.dumps(videos))
    (tmp_path / "results.json").write_text(json.dumps(results))
    args = ["-q", "infer", "--weights", str(tmp_path / "m"), "--split-dir", str(tmp_path / "valid_u"), "--out",
            str(tmp_path / "pred"), "--instances", str(tmp_path / "results.json"), "--instance-videos",
            str(tmp_path / "videos.json")]
    assert main(args) == 0 and (tmp_path / "pred" / "v1" / "0" / "00002.png").is_file()
    videos["videos"][0]["file_names"] = [f"other/{t:05d}.jpg" for t in range(3)]
    (tmp_path / "videos.json").write_text(json.dumps(videos))
    assert main([*args[:-5], str(tmp_path / "pred2"), *args[-4:]]) != 0
    assert not (tmp_path / "pred2" / "v1").exists()


def test_clip_queries_read_the_queries_of_every_frame_of_their_clip():
    from rvos.models.build import build_model
    from rvos.models.modules.deformable_transformer import DeformableTransformer

    torch.manual_seed(0)
    transformer = DeformableTransformer(32, heads=4, enc_layers=1, dec_layers=2, ffn=64, dropout=0.0, levels=2).eval()
    heads = torch.nn.ModuleList(torch.nn.Linear(32, 4) for _ in range(2))
    srcs = [torch.randn(6, 32, 6, 8), torch.randn(6, 32, 3, 4)]  # 2 clips of 3 frames
    pads = [torch.zeros(6, 6, 8, dtype=torch.bool), torch.zeros(6, 3, 4, dtype=torch.bool)]
    memory, shapes, ratios, padding = transformer.encode(srcs, pads, [torch.zeros_like(s) for s in srcs])
    tgt, pos = torch.randn(6, 5, 32), torch.randn(5, 32)
    changed = tgt.clone()
    changed[1] += 1.0  # clip 0, frame 1
    with torch.no_grad():
        decode = lambda x, frames: transformer.decode(x, pos, memory, shapes, ratios, padding, heads, frames)[0]  # noqa: E731
        per_frame, per_frame_changed = decode(tgt, 1), decode(changed, 1)
        clip, clip_changed = decode(tgt, 3), decode(changed, 3)
    others = [0, 2, 3, 4, 5]
    torch.testing.assert_close(per_frame_changed[:, others], per_frame[:, others])  # a frame's queries alone
    for frame in (0, 2):  # the other frames of the changed frame's clip read it
        assert not torch.allclose(clip_changed[:, frame], clip[:, frame])
    torch.testing.assert_close(clip_changed[:, 3:], clip[:, 3:])  # the other clip does not
    assert not torch.allclose(clip, per_frame)

    seen = []
    for flag, frames in (("false", 1), ("true", 4)):
        model = build_model(tiny_config("mutr", *MUTR_OFFICIAL_PATH, f"model.clip_queries={flag}").model).eval()
        hook = model.transformer.decoder.register_forward_pre_hook(lambda m, args: seen.append(args[-1]))
        with torch.no_grad():
            model.encode_clips(torch.rand(1, 4, 3, 64, 96), model.encode_text(model.prepare_text(["a block"])), [-1])
        hook.remove()
        assert seen[-1] == frames
