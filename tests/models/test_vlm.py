import json

import pytest
import torch

from rvos.cli import main
from rvos.config import load_config
from rvos.engine.checkpoint import load_model, save_model
from rvos.errors import CheckpointError
from rvos.models.build import build_model


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("vlm_tiny_synth")
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def clip(t_len=4, h=70, w=100):
    torch.manual_seed(1)
    frames = torch.rand(t_len, 3, h, w)
    target = torch.zeros(1, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        target[0, t, 20:40, 10 + 8 * t:30 + 8 * t] = True
    return frames, target


def test_forward_gives_masks_of_the_input_size(tiny):
    model, _ = tiny
    model.eval()
    frames, _ = clip(t_len=5, h=70, w=100)  # not a multiple of 32: padded inside, cropped back
    masks, scores = model.predict(frames, model.tokenize(["the box moving right"]))
    assert masks.shape == (5, 70, 100) and masks.dtype == torch.bool
    assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()


def test_per_frame_control_decodes_every_frame_alone():
    cfg = load_config("vlm_tiny_synth", ["model.video_decoder.temporal=false"])
    model = build_model(cfg.model).eval()
    frames, target = clip()
    out = model(frames[None], model.tokenize(["a box"]))
    assert out["frames_per_clip"] == 1 and out["video_scores"][-1].shape == (4, 8)
    assert model.predict(frames, model.tokenize(["a box"]))[0].shape == (4, 70, 100)
    assert torch.isfinite(sum(model.loss(out, [target]).values()))


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    cfg = load_config("vlm_tiny_synth")
    model = build_model(cfg.model).train()
    frames, target = clip()
    tokens = model.tokenize(["the box moving right"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        out = model(frames[None], tokens)
        parts = model.loss(out, [target])
        loss = sum(parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert {"similarity", "frame_score_0", "video_mask_2", "video_dice_2"} <= set(parts)
    assert losses[-1] < 0.6 * losses[0], losses


def test_save_and_load_is_an_exact_round_trip(tiny, tmp_path):
    model, cfg = tiny
    save_model(tmp_path / "m", model, cfg)
    loaded, loaded_cfg = load_model(tmp_path / "m")
    assert loaded_cfg == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model.eval()
    frames, _ = clip()
    tokens = model.tokenize(["the box"])
    torch.testing.assert_close(model(frames[None], tokens)["video_masks"][-1],
                               loaded(frames[None], tokens)["video_masks"][-1], rtol=0, atol=0)


def test_loading_a_folder_of_another_model_or_a_corrupt_file_fails_clearly(tiny, tmp_path):
    model, cfg = tiny
    save_model(tmp_path / "m", model, cfg)
    other = load_config("vlm_tiny_synth", ["model.hidden_dim=32", "model.mask_dim=32"])
    (tmp_path / "m" / "config.json").write_text(json.dumps({"config": other.to_dict()}))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not an rvos model folder"):
        load_model(tmp_path)


@pytest.mark.slow
def test_paper_config_builds_with_the_reported_counts_and_a_frozen_clip(capsys):
    assert main(["-q", "info", "--config", "vlm_convnext_l_mevis", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    backbone = info["backbone"]
    assert backbone["model"] == "convnext_large_d_320" and backbone["trainable"] == 0
    assert backbone["frozen"] == backbone["parameters"] > 350_000_000
    assert backbone["image_channels"] == [192, 384, 768, 1536]
    assert info["cross_modal_encoder"]["layers"] == 6
    assert (info["frame_query_decoder"]["layers"], info["frame_query_decoder"]["queries"]) == (9, 20)
    assert (info["video_query_decoder"]["layers"], info["video_query_decoder"]["queries"]) == (6, 20)
    assert info["total"]["trainable"] == info["total"]["parameters"] - backbone["parameters"] > 0
