"""SgMg's parts: the spectrum modulation against a direct numpy computation of its formula, the dynamic mask head
against a per-query loop, segment-and-optimize's shapes, the ReferFormer-style targets, matcher and losses, the
deformable decoder's box refinement, and the model's training outputs and inference session (with the stride-2 stage
of ``model.fine`` too)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rvos.errors import ConfigError
from rvos.models.criterion.referformer import (ReferLossConfig, clip_targets, inclusive_boxes, layer_losses, match,
                                               num_valid_frames)
from rvos.models.layers.dynamic_conv import DynamicMaskHead
from rvos.models.layers.spectrum import SpectrumModulation, centred_gaussian
from rvos.models.meta.base import ClipBatch
from rvos.models.modules.deformable_transformer import DeformableTransformer, inverse_sigmoid
from rvos.models.modules.segment_optimize import SegmentOptimize, shuffle_half, unshuffle_half

from contract import SGMG_OFFICIAL_PATH, random_model, tiny_config


def numpy_spectrum(module: SpectrumModulation, x: np.ndarray, gauss: np.ndarray) -> np.ndarray:
    """The official formula, written out in numpy (float64) from the module's weights."""
    w = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    n, c, h, wd = x.shape
    lap = np.zeros((n, c, h - 2, wd - 2))
    for i in range(h - 2):
        for j in range(wd - 2):
            lap[:, :, i, j] = np.einsum("ncab,ocab->no", x[:, :, i:i + 3, j:j + 3], w["laplace.weight"])
    lap += w["laplace.bias"][None, :, None, None]
    hidden = np.maximum(lap.mean((2, 3)) @ w["fc.0.weight"].T, 0)
    coef = 1 / (1 + np.exp(-(hidden @ w["fc.2.weight"].T)))  # (N, 1)
    spec = np.fft.fft2(x) * (1 - coef[:, :, None, None] * gauss)
    y = np.concatenate([spec.real, spec.imag], 1)
    y = np.maximum(np.einsum("nchw,oc->nohw", y, w["conv1.weight"][:, :, 0, 0]) + w["conv1.bias"][None, :, None, None], 0)
    y = np.einsum("nchw,oc->nohw", y, w["conv2.weight"][:, :, 0, 0]) + w["conv2.bias"][None, :, None, None]
    return x + np.fft.ifft2(y[:, :c] + 1j * y[:, c:]).real


def test_spectrum_modulation_computes_the_official_formula():
    torch.manual_seed(0)
    module = SpectrumModulation(8, sigma=2.0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 8, 7, 9)
    with torch.no_grad():
        out, gauss = module(x)
        coef = module.coefficient(x)
    g = np.exp(-((np.arange(7)[:, None] - 3) ** 2 + (np.arange(9)[None] - 4) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(gauss[0, 0].numpy(), g, rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), numpy_spectrum(module, x.double().numpy(), g), rtol=1e-4, atol=1e-4)
    assert ((coef > 0.05) & (coef < 0.95)).all()  # the gate is neither closed nor open: the test sees the filter


def test_spectrum_gaussians_are_handed_on_and_resized():
    module = SpectrumModulation(4)
    first = centred_gaussian(8, 12, 7.0)
    _, g = module(torch.randn(1, 4, 8, 12))
    torch.testing.assert_close(g, first)
    _, g2 = module(torch.randn(1, 4, 4, 6), g)
    torch.testing.assert_close(g2, torch.nn.functional.interpolate(first, size=(4, 6), mode="bilinear"))
    out, _ = module(torch.randn(1, 4, 2, 2))  # smaller than the 3x3 convolution: padded for the coefficient
    assert out.shape == (1, 4, 2, 2)


def test_dynamic_head_applies_each_querys_own_convolutions_with_relative_coordinates():
    torch.manual_seed(0)
    head = DynamicMaskHead(query_dim=12, in_channels=6, channels=4, layers=2, stride=8)
    features, queries = torch.randn(2, 6, 3, 5), torch.randn(2, 3, 12)
    points = torch.rand(2, 3, 2) * torch.tensor([40.0, 24.0])
    with torch.no_grad():
        out = head(features, queries, points)
    assert out.shape == (2, 3, 4, 3, 5)
    ys, xs = torch.meshgrid(torch.arange(3) * 8 + 4.0, torch.arange(5) * 8 + 4.0, indexing="ij")
    for n in range(2):
        for q in range(3):
            params = head.controller(queries[n, q]).detach()
            w1, w2, b1, b2 = params.split([8 * 4, 4 * 4, 4, 4])
            rel = torch.stack([points[n, q, 0] - xs, points[n, q, 1] - ys])
            x = torch.cat([features[n], rel]).flatten(1)  # (8, hw)
            y = w2.view(4, 4) @ torch.relu(w1.view(4, 8) @ x + b1[:, None]) + b2[:, None]
            torch.testing.assert_close(out[n, q].flatten(1), y, rtol=1e-4, atol=1e-5)


def test_segment_optimize_goes_from_the_stride_8_prior_to_full_resolution():
    refine = SegmentOptimize(16, (6, 10))
    out = refine(torch.randn(3, 16, 4, 5), torch.randn(3, 6, 8, 10), torch.randn(3, 10, 4, 5))
    assert out.shape == (3, 1, 32, 40)


def test_the_stride_2_stage_starts_as_the_official_module_and_reads_the_stem():
    torch.manual_seed(0)
    official, fine = SegmentOptimize(32, (6, 10)), SegmentOptimize(32, (6, 10), fine_channels=5)
    fine.load_state_dict(official.state_dict(), strict=False)
    prior, stride4, stride8 = torch.randn(3, 32, 4, 5), torch.randn(3, 6, 8, 10), torch.randn(3, 10, 4, 5)
    stride2 = torch.randn(3, 5, 16, 20)
    with torch.no_grad():
        expected = official(prior, stride4, stride8)
        torch.testing.assert_close(fine(prior, stride4, stride8, stride2), expected)  # two masks of 16 channels each
        torch.nn.init.normal_(fine.fine[-1].weight, std=0.1)
        moved = fine(prior, stride4, stride8, stride2)
        other = fine(prior, stride4, stride8, stride2.flip(-1))
        torch.testing.assert_close(fine(prior, stride4, stride8), expected)  # without the map: the official output
    assert moved.shape == expected.shape == (3, 2, 32, 40)
    assert not torch.allclose(moved, expected) and not torch.allclose(moved, other)
    with pytest.raises(ValueError, match="multiple of 16"):
        SegmentOptimize(8, (6, 10), upscale=2, fine_channels=5)


def test_a_stride_4_prior_is_folded_into_the_official_layout():
    """``unshuffle_half`` inverts ``shuffle_half``; with ``model.prior_stride`` 4 the dynamic head runs on the
    stride-4 grid, and the stride-2 masks of the folded priors are its 4 channels pixel-shuffled x2."""
    from rvos.models.build import build_model

    x, y = torch.randn(2, 32, 3, 5), torch.randn(2, 8, 6, 10)
    torch.testing.assert_close(unshuffle_half(shuffle_half(x)), x, rtol=0, atol=0)
    torch.testing.assert_close(shuffle_half(unshuffle_half(y)), y, rtol=0, atol=0)
    torch.testing.assert_close(F.pixel_shuffle(unshuffle_half(y), 4), F.pixel_shuffle(y, 2), rtol=0, atol=0)
    cfg = tiny_config("sgmg", *SGMG_OFFICIAL_PATH, "model.prior_stride=4")
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    heads = []
    model.mask_head.register_forward_hook(lambda module, inputs, output: heads.append(output))
    batch = _batch(model)
    with torch.no_grad():
        priors = model(batch)["priors"]  # the last layer's (B, T, Q, 16, H'/8, W'/8), as the official
    head = heads[-1].view(2, 3, cfg.model.queries, 4, 16, 24)  # (N = B x T, Q, 4, H'/4, W'/4)
    assert priors.shape == (2, 3, cfg.model.queries, 16, 8, 12)
    expected = F.pixel_shuffle(head.flatten(0, 2), 2).view(2, 3, cfg.model.queries, 32, 48)
    torch.testing.assert_close(model.coarse_masks(priors), expected)


def test_proposals_start_each_frames_queries_at_its_heatmap_peaks_and_learn_the_centres():
    """With ``model.proposals`` the decoder's first reference points are the peaks of the stride-4 heatmap (cell
    centres, in [0, 1]), its positions their embeddings; the heatmap learns the targets' centres (``centre``), and the
    clip's queries are linked in training too, so that the clip's matching reads one object per query."""
    from rvos.models.build import build_model

    cfg = tiny_config("sgmg", *SGMG_OFFICIAL_PATH, "model.proposals=true", "model.link=true")
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    seen, proposed = {}, []
    decode = model.transformer.decode

    def spy(*args, **kwargs):
        seen.update(kwargs, pos=args[1])
        return decode(*args, **kwargs)

    model.transformer.decode = spy
    model.proposals.register_forward_hook(lambda module, inputs, output: proposed.append(output))
    link, linked = model.link_queries, []
    model.link_queries = lambda *args: linked.append(args) or link(*args)
    batch = _batch(model)
    out = model(batch)
    assert len(linked) == 1  # the clip's queries, in training
    heatmap, anchors, _, _, pos = proposed[-1]
    assert heatmap.shape == (6, 1, 16, 24) and anchors.shape == (6, cfg.model.queries, 2)
    cells = torch.tensor([24.0, 16.0])
    torch.testing.assert_close(seen["reference"], (anchors + 0.5) / cells)
    assert seen["pos"] is pos and len(set(map(tuple, anchors[0].tolist()))) == cfg.model.queries  # distinct peaks
    losses = model.loss(out, batch)
    assert torch.isfinite(losses["centre"]) and losses["centre"] > 0
    sum(losses.values()).backward()
    for part in (model.proposals.objectness[0], model.proposals.content, model.proposals.pos, model.stride4_proj[0]):
        assert part.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="model.proposals.*set model.link"):
        tiny_config("sgmg", *SGMG_OFFICIAL_PATH, "model.proposals=true")


def test_linking_as_objects_follows_an_objects_colour_where_masks_jump_and_drops_background_and_duplicates():
    """Two frames far apart in a clip: the red and the green block swap places, so each mask overlaps the other's
    last mask; a query on the background (a weak peak) and a second mask on the red block (a weaker peak) are no
    objects. ``model.link`` "masks" follows the masks and swaps the blocks; "objects" follows their colours, with
    vlm_tiny_synth's linking weights."""
    from rvos.config import load_config
    from rvos.models.build import build_model
    from rvos.models.modules.query_init import OBJECT_LINKING, reorder

    track = load_config("vlm_tiny_synth").model.track
    assert OBJECT_LINKING == {"new_cost": track.link_new_slot, "colour_weight": track.link_colour,
                              "overlap_weight": track.link_overlap}
    model = build_model(tiny_config("sgmg", "model.link=objects").model).eval()
    h, w = 64, 128
    frames = torch.zeros(2, 3, h, w)
    masks = torch.full((2, 4, h // 2, w // 2), -5.0)  # (T, slot, stride-2 grid): red, green, background, second red
    for t, (red, green) in enumerate([(4, 36), (36, 4)]):
        frames[t, 0, 16:48, 2 * red:2 * red + 48] = frames[t, 1, 16:48, 2 * green:2 * green + 48] = 1.0
        masks[t, 0, 8:24, red:red + 24] = masks[t, 1, 8:24, green:green + 24] = 5.0
        masks[t, 2, 1:4, 30 + t:34 + t] = masks[t, 3, 8:24, red + 1:red + 24] = 5.0
    peaks = torch.tensor([0.9, 0.8, 0.05, 0.6])  # per slot
    order = torch.tensor([[0, 1, 2, 3], [1, 3, 0, 2]])  # frame t's query k is slot order[t, k]
    shown = torch.stack([masks[t, order[t]] for t in range(2)])[None]  # (1, T, Q, h, w)
    priors = F.pixel_unshuffle(shown.flatten(0, 2), 4).view(1, 2, 4, 16, h // 8, w // 8)
    queries = torch.randn(16).expand(1, 2, 4, 16)  # alike: the masks, places and colours decide
    perms, _ = model.link_queries(priors, queries, peaks[order][None], frames[None])
    linked = reorder(shown, perms)[0]
    torch.testing.assert_close(linked[:, :2], masks[:, :2])  # each block its slot
    model.cfg.link = "masks"
    swapped = reorder(shown, model.link_queries(priors, queries)[0])[0]
    torch.testing.assert_close(swapped[1, 0], masks[1, 1])  # the red block's slot took the green block
    with pytest.raises(ConfigError, match="model.link objects.*model.proposals"):
        tiny_config("sgmg", "model.link=objects", "model.proposals=false")
    with pytest.raises(ConfigError, match="model.link: expected"):
        tiny_config("sgmg", "model.link=boxes")
    with pytest.raises(ConfigError, match="model.link_objectness"):
        tiny_config("sgmg", "model.link=objects", "model.link_objectness=1.5")
    assert tiny_config("sgmg", "model.link=true").model.link == "masks"  # the configs written before "objects"


def test_box_refinement_feeds_each_layers_box_to_the_next():
    torch.manual_seed(0)
    transformer = DeformableTransformer(32, heads=4, enc_layers=1, dec_layers=3, ffn=64, dropout=0.0, levels=2)
    heads = torch.nn.ModuleList(torch.nn.Linear(32, 4) for _ in range(3))
    srcs = [torch.randn(2, 32, 6, 8), torch.randn(2, 32, 3, 4)]
    pads = [torch.zeros(2, 6, 8, dtype=torch.bool), torch.zeros(2, 3, 4, dtype=torch.bool)]
    memory, shapes, ratios, padding = transformer.encode(srcs, pads, [torch.zeros_like(s) for s in srcs])
    hs, boxes = transformer.decode(torch.randn(2, 5, 32), torch.randn(5, 32), memory, shapes, ratios, padding, heads)
    assert hs.shape == (3, 2, 5, 32) and boxes.shape == (3, 2, 5, 4)
    first = transformer.reference_points(torch.randn(5, 32)).shape  # a centre per query
    assert first == (5, 2)
    for layer in (1, 2):  # layer l's box: its delta on the previous layer's box
        torch.testing.assert_close(boxes[layer], (heads[layer](hs[layer]) + inverse_sigmoid(boxes[layer - 1])).sigmoid())


def test_targets_are_the_union_with_inclusive_boxes_and_valid_frames():
    objects = torch.zeros(2, 3, 10, 20, dtype=torch.bool)
    objects[0, 0, 2:5, 4:10] = True
    objects[1, 0, 6:8, 12:14] = True
    objects[1, 1, 0:1, 0:1] = True
    targets = clip_targets([objects], (16, 32))
    assert targets.masks.shape == (1, 3, 16, 32) and targets.valid.tolist() == [[True, True, False]]
    # frame 0: rows 2..7, columns 4..13 -> x1 4, x2 13, y1 2, y2 7 over (20, 10); a single pixel has no size
    torch.testing.assert_close(targets.boxes[0, 0], torch.tensor([8.5 / 20, 4.5 / 10, 9 / 20, 5 / 10]))
    torch.testing.assert_close(targets.boxes[0, 1], torch.tensor([0.0, 0.0, 0.0, 0.0]))
    assert targets.boxes[0, 2].abs().sum() == 0
    assert targets.low.shape == (1, 3, 8, 16)
    # each object's own boxes: object 1 in frame 1 is the single pixel at (0, 0)
    torch.testing.assert_close(inclusive_boxes(objects[1])[1], torch.zeros(4))
    torch.testing.assert_close(inclusive_boxes(objects[0])[0], torch.tensor([6.5 / 20, 3 / 10, 5 / 20, 2 / 10]))


def test_matcher_takes_the_query_that_fits_and_losses_count_valid_frames():
    cfg = ReferLossConfig()
    mask = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    mask[0, 0, 2:6, 2:6] = True  # visible in frame 0 only
    targets = clip_targets([mask], (8, 8))
    logits = torch.full((1, 2, 3), -3.0)
    boxes = torch.rand(1, 2, 3, 4) * 0.2 + 0.4
    masks = torch.full((1, 2, 3, 8, 8), -8.0)
    masks[0, :, 1] = torch.where(targets.masks[0] > 0, 8.0, -8.0)  # query 1 is the object
    boxes[0, 0, 1] = targets.boxes[0, 0]
    matched = match(logits, boxes, masks, targets, targets.masks, cfg)
    assert matched.tolist() == [1]
    norm = num_valid_frames(targets.valid)
    assert norm == 1.0
    losses = layer_losses(logits, boxes, matched, masks[0, :, 1][None], None, targets, cfg, norm)
    # the box terms count the absent frame too, against an all-zero box
    torch.testing.assert_close(losses["box"], cfg.box_weight * boxes[0, 1, 1].abs().sum())
    assert torch.isfinite(losses["giou"]) and losses["dice"].item() < 1e-2
    assert "mask_low" not in losses
    # the class loss: every (frame, query) focal term, the matched query positive in its valid frame alone
    p = torch.sigmoid(torch.tensor(-3.0))
    neg = 0.75 * p**2 * -torch.log(1 - p)
    pos = 0.25 * (1 - p) ** 2 * -torch.log(p)
    torch.testing.assert_close(losses["class"], cfg.class_weight * (5 * neg + pos))


def _batch(model, t_len=3, h=64, w=96):
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, t_len, 3, h, w, generator=g) * 0.3
    inst = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        inst[0, t, 8:30, 10 + 8 * t:40 + 8 * t] = True
        inst[1, t, 36:60, 50:80] = True
    frames[:, :, 0][inst[0][None].expand(2, -1, -1, -1)] = 0.9
    sentences = ["the red block moving right", "the still block"]
    return ClipBatch(frames, model.prepare_text(sentences), sentences, [inst, inst],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v", "v"], ["0", "1"])


@pytest.mark.parametrize("option", [[], ["model.fine=4"], ["model.prior_stride=4"]])
def test_training_refines_the_matched_query_of_every_layer_and_inference_the_best_one(option):
    """The official path, with ``model.fine`` the stride-2 stage (set off zero, so that its stem's map counts), and
    with ``model.prior_stride`` 4 the dynamic head on the stride-4 grid, in training, in ``postprocess`` and in the
    session alike."""
    from rvos.models.build import build_model

    cfg = tiny_config("sgmg", *SGMG_OFFICIAL_PATH, *option)
    fine = "model.fine=4" in option
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if fine:
        torch.nn.init.normal_(model.mask_refine.fine[-1].weight, std=0.1)
    batch = _batch(model)
    out = model(batch)
    layers = cfg.model.transformer.dec_layers
    assert out["matched"].shape == (layers, 2) and out["masks"].shape == (layers, 2, 3, 64, 96)
    assert out["low_masks"].shape == (layers, 2, 3, 32, 48)
    losses = model.loss(out, batch)
    expected = {"class", "box", "giou", "mask", "dice", "mask_low", "dice_low"}
    assert set(losses) == expected | {f"{k}_{i}" for k in expected for i in range(layers - 1)}
    if option == ["model.prior_stride=4"]:  # the stride-4 map reaches every layer's priors
        sum(losses.values()).backward()
        assert model.stride4_proj[0].weight.grad.abs().sum() > 0
    elif fine:  # the stage and its stem learn, on the last layer's masks alone
        sum(losses.values()).backward()
        assert model.mask_refine.fine[-1].weight.grad.abs().sum() > 0
        assert model.fine_stem.layers[0].weight.grad.abs().sum() > 0
        stem, model.fine_stem = model.fine_stem, None  # the official two stages
        torch.manual_seed(0)
        with torch.no_grad():
            official = model(batch)["masks"]
        model.fine_stem = stem
        torch.manual_seed(0)
        with torch.no_grad():
            again = model(batch)["masks"]
        torch.testing.assert_close(again[:-1], official[:-1])
        assert not torch.allclose(again[-1], official[-1])
    model.eval()
    with torch.no_grad():
        (own, _) = model.postprocess(model(batch))
        if fine:  # inference shows the stage's masks
            stem, model.fine_stem = model.fine_stem, None
            assert not torch.allclose(model.postprocess(model(batch))[0].logits, own.logits)
            model.fine_stem = stem
        session = model.start_session(model.prepare_text(batch.sentences[:1]))
        session.observe(batch.frames[0], 0)
        session.decode()
        (streamed,) = session.predict(batch.frames[0], 0)
        (probs, candidates), = session.candidates(batch.frames[0], 0)
        (priors,) = session.prior_masks(batch.frames[0], 0)
        (boxes,) = session.prior_boxes(batch.frames[0], 0)
        expected = model(batch)
        expected_priors = model.coarse_masks(expected["priors"][0])
    assert own.logits.shape == (3, 1, 64, 96) and candidates.shape == (3, cfg.model.queries, 64, 96)
    torch.testing.assert_close(priors, expected_priors, atol=1e-4, rtol=1e-4)
    assert priors.shape == (3, cfg.model.queries, 32, 48)
    torch.testing.assert_close(boxes, expected["boxes"][-1, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(streamed.logits, own.logits, atol=1e-3, rtol=1e-3)
    best = probs.sum(0).argmax()
    torch.testing.assert_close(candidates[:, best], streamed.logits[:, 0])


def test_a_per_frame_timm_backbone_needs_the_four_strides():
    from rvos.errors import ConfigError
    from rvos.models.build import build_model

    resnet = ["model.backbone.kind=timm", "model.backbone.timm_model=resnet18"]
    with pytest.raises(ConfigError, match="strides 4, 8, 16, 32.*timm_out_indices"):
        build_model(tiny_config("sgmg", *resnet).model)  # its first four maps are at strides 2..16
    model = build_model(tiny_config("sgmg", *resnet, "model.backbone.timm_out_indices=[1,2,3,4]").model)
    assert model.window_invariant and model.backbone.strides == [4, 8, 16, 32]


@pytest.mark.parametrize("bad, message", [("model.mask_channels=8", "multiple of 16"),
                                          ("model.backbone.kind=vit", "video_swin, swin or timm"),
                                          ("model.levels=5", "3 .* or 4"),
                                          ("model.fine=-1", "stride-2 stem's channels"),
                                          ("model.fine=4 model.size_divisibility=6", "multiple of 4"),
                                          ("model.prior_stride=2", "8 .official. or 4"),
                                          ("model.prior_stride=4 model.size_divisibility=4", "multiple of 8"),
                                          ("model.prior_stride=4 model.mask_channels=32", "mask_channels 16")])
def test_config_errors_are_clear(bad, message):
    from rvos.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        tiny_config("sgmg", *bad.split())


@pytest.mark.parametrize("link", [["model.proposals=false", "model.link=false", "model.duplicate_iou=0"],
                                  ["model.duplicate_iou=0"], [], ["model.link=masks"]])
def test_windowed_inference_keeps_one_query_for_the_whole_video(link):
    """With a backbone that reads each frame alone, streaming in windows gives whole-video inference: the query is
    chosen over every frame, each window refined with it (with ``model.link``, its queries linked over the windows as
    over the whole video, and their duplicates emptied with ``model.duplicate_iou``)."""
    import numpy as np

    from rvos.data.video import VideoSource
    from rvos.engine.inference import Predictor

    cfg = tiny_config("sgmg", "model.backbone.kind=timm", "model.backbone.timm_model=resnet18",
                      "model.backbone.timm_out_indices=[1,2,3,4]", "data.short_side=48", "data.max_long_side=64", *link)
    model = random_model(cfg)  # masks that show something
    assert model.window_invariant
    frames = np.random.default_rng(0).integers(40, 90, (9, 48, 64, 3), dtype=np.uint8)
    for t in range(9):
        frames[t, 10:26, 2 + 4 * t:18 + 4 * t] = (220, 40, 40)
    video = VideoSource(9, (48, 64), lambda idx: frames[list(idx)], "clip")
    texts = ["the red square moving right", "the object"]
    whole = list(Predictor(model, cfg, window=9).predict(video, texts))
    windowed = list(Predictor(model, cfg, window=4).predict(video, texts))
    a, b = np.stack([f.masks for f in whole]), np.stack([f.masks for f in windowed])
    assert a.any() and (a == b).mean() > 0.999
    np.testing.assert_allclose(np.stack([f.scores for f in whole]), np.stack([f.scores for f in windowed]), atol=1e-4)


def test_a_timm_swin_reads_frames_of_any_size():
    from rvos.models.build import build_model

    cfg = tiny_config("sgmg", "model.backbone.kind=timm", "model.backbone.timm_model=swin_tiny_patch4_window7_224")
    model = build_model(cfg.model).eval()
    features = model.backbone.forward_image(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(16, 24), (8, 12), (4, 6), (2, 3)]
