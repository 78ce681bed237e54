"""rvos's SgMg against the official code (bo-miao/SgMg): the official model at a reduced random configuration, run
by tests/fixtures/make_sgmg_model.py, converted strictly by ``rvos.models.convert.sgmg`` and run on the same frames
and sentences, in inference (every layer's scores and boxes, the last layer's dynamic-head maps, the chosen query and its
refined masks) and in training (each layer's matched query, the refined masks and the seven losses of every
layer)."""

from pathlib import Path

import pytest
import torch

from rvos.config import load_config
from rvos.models.build import build_model
from rvos.models.convert.rules import ConversionError
from rvos.models.convert.sgmg import convert_checkpoint
from rvos.models.meta.base import ClipBatch, TextInputs

from contract import SGMG_OFFICIAL_PATH
from official_fixture import convert_command_round_trip, dropouts_off, read_official, video_swin_overrides

FIXTURE = Path(__file__).parents[1] / "fixtures" / "sgmg_model_official.safetensors"
LOSS_NAMES = {"ce": "class", "bbox": "box", "giou": "giou", "mask": "mask", "dice": "dice", "mask_low": "mask_low",
              "dice_low": "dice_low"}


def rvos_model(cfg_json):
    a, swin = cfg_json["args"], cfg_json["swin"]
    cfg = load_config("sgmg_tiny_synth", [
        f"model.hidden_dim={a['hidden_dim']}", f"model.queries={a['num_queries']}",
        f"model.levels={a['num_feature_levels']}", f"model.transformer.enc_layers={a['enc_layers']}",
        f"model.transformer.dec_layers={a['dec_layers']}", f"model.transformer.heads={a['nheads']}",
        f"model.transformer.ffn={a['dim_feedforward']}", "model.transformer.dropout=0.0",
        *video_swin_overrides(swin), "model.text.model=rvos-tiny-roberta", *SGMG_OFFICIAL_PATH])
    return build_model(cfg.model, load_pretrained=False), cfg


@pytest.fixture(scope="module")
def parity():
    state, tensors, cfg_json = read_official(FIXTURE)
    model, cfg = rvos_model(cfg_json)
    model.load_state_dict(convert_checkpoint(state, model, str(FIXTURE)), strict=True)
    dropouts_off(model)
    frames = tensors["input.frames"].float() / 255
    text = TextInputs(input_ids=tensors["input.input_ids"], attention_mask=tensors["input.attention_mask"])
    masks = tensors["target.masks"].bool()
    batch = ClipBatch(frames, text, cfg_json["captions"], [m[None] for m in masks], [torch.tensor([True])] * 2,
                      ["v0", "v1"], ["0", "0"])
    return model, batch, tensors


def test_the_official_checkpoint_converts_strictly(parity):
    state, _, cfg_json = read_official(FIXTURE)
    model, _ = rvos_model(cfg_json)
    broken = dict(state)
    broken["transformer.decoder.bbox_embed.0.layers.0.weight"] = broken["bbox_embed.0.layers.0.weight"] + 1
    with pytest.raises(ConversionError, match="bbox_embed.* differs"):
        convert_checkpoint(broken, model)
    extra = dict(state, **{"transformer.unknown.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="unexpected"):
        convert_checkpoint(extra, model)


def test_inference_matches_the_official_outputs(parity):
    model, batch, ref = parity
    model.eval()
    b, t_len = batch.frames.shape[:2]
    with torch.no_grad():
        text = model.encode_text(batch.text)
        torch.testing.assert_close(text.words, ref["output.words"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(text.sentence, ref["output.sentence"], atol=1e-5, rtol=1e-5)
        out = model.encode_frames(batch.frames.flatten(0, 1), text.repeat(t_len), t_len)
        layers, q = out["logits"].shape[0], out["logits"].shape[-1]
        torch.testing.assert_close(out["logits"].view(layers, b, t_len, q), ref["output.logits"][..., 0],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["boxes"].view(layers, b, t_len, q, 4), ref["output.boxes"], atol=1e-4, rtol=1e-4)
        priors = out["priors"][-1].view(b, t_len * q, *out["priors"].shape[-3:])
        torch.testing.assert_close(priors, ref["output.dynamic"], atol=1e-4, rtol=1e-4)
        results = model.postprocess(model(batch))
    chosen = torch.stack([torch.sigmoid(out["logits"][-1].view(b, t_len, q)[k]).mean(0).argmax() for k in range(b)])
    assert chosen.tolist() == ref["output.chosen_query"].flatten().tolist()
    masks = torch.stack([r.logits[:, 0] for r in results])
    torch.testing.assert_close(masks, ref["output.pred_masks"][:, :, 0], atol=1e-4, rtol=1e-4)


def test_training_matches_the_official_matching_masks_and_losses(parity):
    model, batch, ref = parity
    model.train()
    out = model(batch)
    torch.testing.assert_close(out["targets"].boxes, ref["target.boxes"])
    assert out["targets"].valid.tolist() == ref["target.valid"].bool().tolist()
    assert out["matched"].tolist() == ref["output.train.matched_query"].tolist()
    torch.testing.assert_close(out["masks"][-1], ref["output.train.pred_masks"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["low_masks"][-1], ref["output.train.pred_masks_low"], atol=1e-4, rtol=1e-4)
    losses = model.loss(out, batch)
    weights = {"class": 2, "box": 5, "giou": 2, "mask": 2, "dice": 5, "mask_low": 2, "dice_low": 5}
    expected = {}
    for key, value in ref.items():
        if key.startswith("output.train.loss.loss_"):
            name = key[len("output.train.loss.loss_"):]
            base, _, layer = name.rpartition("_") if name[-1].isdigit() else (name, "", "")
            rvos_name = LOSS_NAMES[base] + (f"_{layer}" if layer else "")
            expected[rvos_name] = weights[LOSS_NAMES[base]] * value
    assert set(losses) == set(expected)
    for key in expected:
        torch.testing.assert_close(losses[key].detach(), expected[key].reshape(()), atol=1e-5, rtol=1e-4, msg=key)


def test_convert_command_writes_a_model_folder_that_loads(tmp_path, parity):
    """``rvos convert sgmg`` on the official file (the state dict under ``model``, the epoch and the argparse options
    beside it, as the official script saves it): the folder loads with the converted weights."""
    state, _, cfg_json = read_official(FIXTURE)
    _, cfg = rvos_model(cfg_json)
    convert_command_round_trip("sgmg", state, cfg, parity[0], tmp_path, epoch=5)
