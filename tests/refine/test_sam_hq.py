"""SAM-HQ refinement: the prompts of each mask, the refiner over a tiny random-weight SAM-HQ, ``rvos refine`` on a
split's predictions, and ``infer.refine`` through the Predictor, the CLI and the API."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rvos.cli import main
from rvos.config import load_config
from rvos.data.frames import read_label_png, write_mask_png
from rvos.errors import CheckpointError, ConfigError
from rvos.refine import RefineConfig
from rvos.refine.prompts import NEGATIVE, POSITIVE, mask_prompt
from rvos.refine.sam_hq import SamHQRefiner, load_sam_hq

from layouts import write_mevis

SIZE = 64  # the tiny SAM-HQ's input side (ViT-L's is 1024)


def tiny_sam_hq_config():
    from transformers import SamHQConfig

    return SamHQConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=SIZE,
                           patch_size=16, output_channels=32, window_size=2, global_attn_indexes=[1], mlp_dim=64,
                           num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=SIZE, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32, vit_dim=32),
    )


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory):
    """A random-weight SAM-HQ saved as a Hugging Face folder, with a processor for its 64-pixel input."""
    from transformers import SamHQModel, SamHQProcessor
    from transformers.models.sam.image_processing_sam import SamImageProcessor

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("sam_hq")
    SamHQModel(tiny_sam_hq_config()).save_pretrained(out)
    SamHQProcessor(SamImageProcessor(size={"longest_edge": SIZE}, pad_size={"height": SIZE, "width": SIZE})
                   ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def sam(sam_dir):
    return load_sam_hq(str(sam_dir))


def blob(h=40, w=56, seed=0):
    """An irregular mask: a disc with holes, so that its box holds background."""
    yy, xx = np.mgrid[:h, :w]
    m = (yy - 20) ** 2 + (xx - 25) ** 2 < 12 ** 2
    return m & (np.random.default_rng(seed).random((h, w)) > 0.2)


class Calls:
    """Counts the frames SAM-HQ's image encoder sees and the masks its decoder is prompted for."""

    def __init__(self, model):
        self.frames, self.encoder_calls, self.masks = 0, 0, 0
        model.vision_encoder.register_forward_hook(self._encoder, with_kwargs=True)
        model.mask_decoder.register_forward_hook(self._decoder, with_kwargs=True)

    def _encoder(self, module, args, kwargs, output):
        self.encoder_calls += 1
        self.frames += output[0].shape[0]

    def _decoder(self, module, args, kwargs, output):
        self.masks += output[0].shape[1]  # (1 frame, P masks, 1, h, w)


# ------------------------------------------------------------------------------------------------ prompts


def test_points_inside_outside_and_in_the_box_with_exact_counts():
    mask = blob()
    p = mask_prompt(mask, seed=0)
    ys, xs = np.nonzero(mask)
    assert p.box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert (p.labels == POSITIVE).sum() == 10 and (p.labels == NEGATIVE).sum() == 5
    x, y = p.points[:, 0], p.points[:, 1]
    pos, neg = p.labels == POSITIVE, p.labels == NEGATIVE
    assert mask[y[pos], x[pos]].all()
    assert not mask[y[neg], x[neg]].any()
    assert ((x >= p.box[0]) & (x <= p.box[2]) & (y >= p.box[1]) & (y <= p.box[3])).all()
    assert len({tuple(q) for q in p.points[pos]}) == 10  # enough pixels: drawn without replacement
    custom = mask_prompt(mask, seed=0, positives=3, negatives=7)
    assert (custom.labels == POSITIVE).sum() == 3 and (custom.labels == NEGATIVE).sum() == 7


def test_points_depend_on_the_seed_and_the_mask_only():
    mask = blob()
    a, b = mask_prompt(mask, seed=0), mask_prompt(mask.copy(), seed=0)
    assert np.array_equal(a.points, b.points)
    assert not np.array_equal(a.points, mask_prompt(mask, seed=1).points)
    other = blob(seed=1)
    assert not np.array_equal(a.points, mask_prompt(other, seed=0).points)


def test_tiny_masks_use_every_pixel_then_repeat_and_a_full_box_has_no_negatives():
    mask = np.zeros((20, 20), bool)
    mask[5, 5] = mask[5, 7] = mask[6, 6] = True  # 3 pixels, a 3x2 box with 3 background pixels
    p = mask_prompt(mask, seed=0)
    pos = p.points[p.labels == POSITIVE]
    neg = p.points[p.labels == NEGATIVE]
    assert len(pos) == 10 and {tuple(q) for q in pos} == {(5, 5), (7, 5), (6, 6)}
    assert len(neg) == 5 and {tuple(q) for q in neg} == {(6, 5), (5, 6), (7, 6)}
    rect = np.zeros((20, 20), bool)
    rect[2:8, 3:9] = True  # fills its box: no background inside it
    r = mask_prompt(rect, seed=0)
    assert (r.labels == POSITIVE).sum() == 10 and (r.labels == NEGATIVE).sum() == 0
    assert mask_prompt(np.zeros((20, 20), bool)) is None


# ------------------------------------------------------------------------------------------------ refiner


def test_one_embedding_per_frame_for_every_mask_and_empty_masks_stay_empty(sam):
    model, processor = sam
    refiner = SamHQRefiner(model, processor, batch_size=2)
    calls = Calls(refiner.model)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 40, 56, 3), dtype=np.uint8)
    masks = np.zeros((3, 5, 40, 56), bool)
    masks[0, [0, 1, 3]] = blob()  # frames 2 and 4 have no mask at all
    masks[1, [0, 3]] = blob(seed=2)
    masks[2, 1, 2:4, 3:5] = True  # a 4-pixel mask
    out = refiner(frames, masks)
    assert out.shape == masks.shape and out.dtype == bool
    assert calls.frames == 3 and calls.encoder_calls == 2  # frames 0, 1, 3 in batches of 2
    assert calls.masks == 6  # the non-empty masks, each decoded once
    assert not out[:, [2, 4]].any() and not out[1, 1].any() and not out[2, [0, 3]].any()
    assert out[0, 0].any()  # a random SAM-HQ still says something


def test_all_empty_masks_never_call_sam(sam):
    refiner = SamHQRefiner(*sam)
    calls = Calls(refiner.model)
    out = refiner(np.zeros((3, 40, 56, 3), np.uint8), np.zeros((2, 3, 40, 56), bool))
    assert out.shape == (2, 3, 40, 56) and not out.any()
    assert calls.encoder_calls == 0 and calls.masks == 0


def test_refined_masks_do_not_depend_on_batching_or_sentence_order(sam):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (4, 40, 56, 3), dtype=np.uint8)
    masks = np.stack([np.stack([blob(seed=s + t) for t in range(4)]) for s in range(3)])
    masks[2, :, :, :] = False
    masks[2, 1, 10:12, 10:11] = True  # a tiny mask: its prompt is decoded apart from the others (no negatives)
    a = SamHQRefiner(*sam, batch_size=4)(frames, masks)
    b = SamHQRefiner(*sam, batch_size=1)(frames, masks[::-1])[::-1]
    assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------ weights


def test_weights_not_found_say_what_to_download(sam_dir, tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="does not exist.*hf download syscv-community/sam-hq-vit-large"):
        load_sam_hq(str(tmp_path / "nowhere"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be found.*hf download"):
        load_sam_hq("someone/sam-hq-not-in-the-cache")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(sam_dir, incomplete)
    weights = load_file(incomplete / "model.safetensors")
    del weights["mask_decoder.hq_token.weight"]
    save_file(weights, incomplete / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing.*hq_token"):
        load_sam_hq(str(incomplete))
    plain = tmp_path / "plain"
    shutil.copytree(sam_dir, plain)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "model_type": "sam"}))
    with pytest.raises(CheckpointError, match="'sam' model, not SAM-HQ"):
        load_sam_hq(str(plain))


def test_a_folder_without_processor_config_gets_sams_preprocessing_at_the_models_size(sam_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sam_dir / name, bare / name)
    _, processor = load_sam_hq(str(bare))
    assert processor.target_size == SIZE


def test_refine_config_keys():
    cfg = load_config("vlm_tiny_synth")
    assert cfg.infer.refine is None
    cfg = load_config("vlm_tiny_synth", ["infer.refine={}"])
    assert cfg.infer.refine == RefineConfig()
    assert cfg.infer.refine.sam == "syscv-community/sam-hq-vit-large" and cfg.infer.refine.positive_points == 10
    cfg = load_config("vlm_tiny_synth", ["infer.refine.sam=/models/sam", "infer.refine.seed=3"])
    assert cfg.infer.refine.sam == "/models/sam" and cfg.infer.refine.seed == 3
    with pytest.raises(ConfigError, match="batch_size"):
        load_config("vlm_tiny_synth", ["infer.refine.batch_size=0"])


# ------------------------------------------------------------------------------------------------ rvos refine


@pytest.fixture
def predicted(tmp_path):
    """A MeViS split (video v1, 3 frames, expressions 0, 1, 2) and predictions for it: the targets, with
    expression 2's empty frames and a frame of expression 0 emptied."""
    objects = write_mevis(tmp_path, "valid_u", size=(24, 32), frames=3)
    pred = tmp_path / "pred"
    targets = {"0": objects["1"].copy(), "1": objects["1"] | objects["2"], "2": objects["2"]}
    targets["0"][2] = False
    for exp, masks in targets.items():
        for t, m in enumerate(masks):
            write_mask_png(pred / "v1" / exp / f"{t:05d}.png", m)
    return tmp_path / "valid_u", pred, targets


def _pngs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def test_rvos_refine_writes_the_same_layout(sam_dir, predicted, tmp_path, capsys):
    split, pred, targets = predicted
    out = tmp_path / "refined"
    args = ["-q", "refine", str(pred), "--split-dir", str(split), "--out", str(out), "--sam", str(sam_dir)]
    assert main(args + ["--batch-size", "2"]) == 0
    assert "refined 9 masks of 1 videos" in capsys.readouterr().out
    assert _pngs(out) == _pngs(pred)
    for exp, masks in targets.items():
        for t, m in enumerate(masks):
            refined = read_label_png(out / "v1" / exp / f"{t:05d}.png")
            assert refined.shape == (24, 32)
            if not m.any():
                assert not refined.any()  # empty predictions stay empty
    assert main(["-q", "eval", "--gt", str(split), "--pred", str(out)]) == 0  # rvos eval reads it
    before = (out / "v1" / "0" / "00000.png").read_bytes()
    assert main(args) == 2  # an existing output is refused, and left as it was
    assert "already exists" in capsys.readouterr().err
    assert (out / "v1" / "0" / "00000.png").read_bytes() == before
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
    assert _pngs(out) == _pngs(pred) and not list(tmp_path.glob(".*.partial"))
    before = {f: (out / f).read_bytes() for f in _pngs(out)}
    write_mask_png(pred / "v1" / "2" / "00001.png", np.ones((10, 10), bool))
    assert main(args + ["--overwrite"]) == 2  # fails half-way: the earlier output is untouched, nothing partial left
    assert "00001.png is 10x10 but the video's frames are 24x32" in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in _pngs(out)} == before and not list(tmp_path.glob(".*.partial"))


def test_rvos_refine_bad_input_fails_before_sam_is_loaded(predicted, tmp_path, capsys):
    split, pred, _ = predicted
    out = tmp_path / "refined"
    nowhere = str(tmp_path / "no_sam")
    base = ["-q", "refine", "--split-dir", str(split), "--out", str(out), "--sam", nowhere]
    assert main(base + [str(tmp_path / "missing")]) == 2
    assert "predictions folder" in capsys.readouterr().err
    shutil.copytree(pred / "v1", pred / "v9")
    assert main(base + [str(pred)]) == 2
    assert "has no video 'v9'" in capsys.readouterr().err
    shutil.rmtree(pred / "v9")
    for inside in (pred / "refined", tmp_path):
        assert main(base[:4] + ["--out", str(inside), "--overwrite", "--sam", nowhere, str(pred)]) == 2
        assert "never replaced" in capsys.readouterr().err
    assert main(base + [str(pred)]) == 2  # the input is fine: now the weights are missing
    err = capsys.readouterr().err
    assert "SAM-HQ folder" in err and "hf download" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ infer.refine


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from rvos.engine.checkpoint import save_model

    from contract import KEEP_ALL, random_model

    cfg = load_config("vlm_tiny_synth", ["data.short_side=24", "data.max_long_side=32", "infer.window=2", KEEP_ALL])
    model = random_model(cfg)
    out = tmp_path_factory.mktemp("model")
    save_model(out, model, cfg)
    return out, model, cfg


def test_infer_refine_equals_rvos_refine_afterwards(sam_dir, tiny_model, predicted, tmp_path):
    """SAM-HQ during inference (a window at a time, through the Predictor) and on the saved predictions afterwards
    refine the same masks identically: the points depend on the mask only."""
    path, model, cfg = tiny_model
    split = predicted[0]
    infer = ["-q", "infer", "--weights", str(path), "--split-dir", str(split)]
    assert main(infer + ["--out", str(tmp_path / "plain")]) == 0
    assert main(infer + ["--out", str(tmp_path / "during"), "--sam", str(sam_dir)]) == 0
    assert main(["-q", "refine", str(tmp_path / "plain"), "--split-dir", str(split), "--out", str(tmp_path / "after"),
                 "--sam", str(sam_dir), "--batch-size", "1"]) == 0
    files = _pngs(tmp_path / "plain")
    assert files == _pngs(tmp_path / "during") == _pngs(tmp_path / "after")
    during = np.stack([read_label_png(tmp_path / "during" / f) for f in files])
    after = np.stack([read_label_png(tmp_path / "after" / f) for f in files])
    plain = np.stack([read_label_png(tmp_path / "plain" / f) for f in files])
    assert plain.any() and not np.array_equal(during, plain)
    # frames are encoded in other batches (the Predictor's windows of 2, batches of 4): equal up to float noise
    assert (during != after).mean() < 1e-3


def test_infer_refine_from_the_models_config_and_the_api(sam_dir, tiny_model, tmp_path):
    from rvos.api import Segmenter
    from rvos.engine.checkpoint import save_model

    from rvos.engine.inference import Predictor
    from rvos.refine.sam_hq import build_refiner

    _, model, cfg = tiny_model
    refine = RefineConfig(sam=str(sam_dir))
    video = np.random.default_rng(0).integers(0, 255, (3, 24, 32, 3), dtype=np.uint8)
    texts = ["the red square", "the object moving left"]
    plain = Segmenter(model, cfg)(video, texts)
    direct = Segmenter(model, cfg, refine=refine)(video, texts)
    cfg.infer.refine = refine
    try:
        save_model(tmp_path / "m", model, cfg)
    finally:
        cfg.infer.refine = None
    from_config = Segmenter.from_pretrained(tmp_path / "m")(video, texts)
    assert Segmenter.from_pretrained(tmp_path / "m", refine=False).predictor.refiner is None
    predictor = Predictor(model, cfg, refiner=build_refiner(refine))
    frames = list(predictor.predict(Segmenter.source(video), texts))
    for k in range(2):
        assert np.array_equal(direct[k].masks, from_config[k].masks)
        assert np.array_equal(direct[k].masks, np.stack([f.masks[k] for f in frames]))
        assert np.array_equal(direct[k].scores, plain[k].scores)  # scores are the model's, masks are SAM-HQ's
    assert not all(np.array_equal(d.masks, p.masks) for d, p in zip(direct, plain))
