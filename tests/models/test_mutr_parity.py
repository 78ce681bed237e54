"""rvos's MUTR against the official code (OpenGVLab/MUTR): the official model at a reduced random configuration, run
by tests/fixtures/make_mutr_model.py, converted strictly by ``rvos.models.convert.mutr`` and run on the same clips
and sentences. Each clip is run alone, as the official inference does (with two clips in a batch the official MTI
mixes them, see :mod:`rvos.models.meta.mutr`): in inference the words, MTA's sentence feature, the scores, boxes
and stride-4 mask logits of every query, the chosen query; in training each layer's matched query and its losses."""

from pathlib import Path

import pytest
import torch

from rvos.config import load_config
from rvos.models.build import build_model
from rvos.models.convert.mutr import convert_checkpoint
from rvos.models.criterion.referformer import match
from rvos.models.meta.base import ClipBatch, TextInputs

from contract import MUTR_OFFICIAL_PATH
from official_fixture import convert_command_round_trip, dropouts_off, read_official, video_swin_overrides

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mutr_model_official.safetensors"
LOSSES = {"ce": ("class", 2), "bbox": ("box", 5), "giou": ("giou", 2), "mask": ("mask", 2), "dice": ("dice", 5)}


def rvos_model(cfg_json, extra: list[str] = ()):
    a, swin, hard = cfg_json["args"], cfg_json["swin"], cfg_json["hard_coded"]
    mti, mta = hard["mti"], hard["mta"]
    cfg = load_config("mutr_tiny_synth", [
        f"model.hidden_dim={a['hidden_dim']}", f"model.queries={a['num_queries']}",
        f"model.levels={a['num_feature_levels']}", f"model.mask_dim={a['mask_dim']}",
        f"model.mask_channels={a['dynamic_mask_channels']}", f"model.controller_layers={a['controller_layers']}",
        f"model.mta_ffn={mta['d_ffn'][1]}", f"model.fusion_heads={hard['fusion_heads'][1]}",
        f"model.transformer.enc_layers={a['enc_layers']}", f"model.transformer.dec_layers={a['dec_layers']}",
        f"model.transformer.heads={a['nheads']}", f"model.transformer.ffn={a['dim_feedforward']}",
        "model.transformer.dropout=0.0", f"model.mti.enc_layers={mti['enc_layers'][1]}",
        f"model.mti.dec_layers={mti['dec_layers'][1]}", f"model.mti.window={mti['window_size'][1]}",
        f"model.mti.heads={mti['nheads'][1]}", f"model.mti.ffn={mti['dim_feedforward'][1]}", "model.mti.dropout=0.0",
        *video_swin_overrides(swin), "model.text.model=rvos-tiny-roberta", *MUTR_OFFICIAL_PATH, *extra])
    return build_model(cfg.model, load_pretrained=False), cfg


@pytest.fixture(scope="module")
def parity():
    state, tensors, cfg_json = read_official(FIXTURE)
    model, cfg = rvos_model(cfg_json)
    model.load_state_dict(convert_checkpoint(state, model, str(FIXTURE)), strict=True)
    dropouts_off(model)
    clips = []
    for b in range(tensors["input.frames"].shape[0]):  # each clip alone, its sentence without padding
        n = int(tensors["input.attention_mask"][b].sum())
        text = TextInputs(input_ids=tensors["input.input_ids"][b:b + 1, :n],
                          attention_mask=tensors["input.attention_mask"][b:b + 1, :n])
        frames = tensors["input.frames"][b:b + 1].float() / 255
        mask = tensors["target.masks"][b].bool()
        clips.append(ClipBatch(frames, text, [cfg_json["captions"][b]], [mask[None]], [torch.tensor([True])],
                               [f"v{b}"], ["0"]))
    return model, clips, tensors


def test_inference_matches_the_official_outputs_clip_by_clip(parity):
    model, clips, ref = parity
    model.eval()
    for b, batch in enumerate(clips):
        t_len = batch.frames.shape[1]
        with torch.no_grad():
            text = model.encode_text(batch.text)
            n = text.words.shape[1]
            torch.testing.assert_close(text.words[0], ref["output.words"][b, :n], atol=1e-5, rtol=1e-5)
            seen = []
            hook = model.mta.register_forward_hook(lambda m, i, o: seen.append(o))
            out = model(batch)
            hook.remove()
            (result,) = model.postprocess(out)
        assert len(seen) == model.cfg.levels  # MTA: one shared layer, once per level
        torch.testing.assert_close(seen[-1][0], ref["output.words_mta"][b, :n], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(seen[-1][0, 0], ref["output.sentence"][b], atol=1e-4, rtol=1e-4)
        q = out["logits"].shape[-1]
        torch.testing.assert_close(out["logits"][0, 0], ref["output.logits"][0, b, 0, :, 0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["boxes"][0, 0], ref["output.boxes"][0, b], atol=1e-4, rtol=1e-4)
        masks = out["masks"][0, 0]  # (T, Q, h, w)
        torch.testing.assert_close(masks, ref["output.dynamic"][b].view(t_len, q, *masks.shape[-2:]),
                                   atol=1e-4, rtol=1e-4)
        assert out["logits"][0, 0].argmax().item() == ref["output.chosen_query"][b].item()
        up = torch.nn.functional.interpolate(result.logits, scale_factor=4, mode="bilinear", align_corners=False)
        torch.testing.assert_close(up[:, 0], ref["output.pred_masks"][b], atol=1e-4, rtol=1e-4)


def test_training_matches_the_official_matching_and_losses_clip_by_clip(parity):
    model, clips, ref = parity
    model.train()
    for b, batch in enumerate(clips):
        out = model(batch)
        torch.testing.assert_close(out["targets"].boxes[0], ref["target.boxes"][b])
        torch.testing.assert_close(out["logits"][:, 0], ref["output.train.single.logits"][:, b, 0, :, 0],
                                   atol=1e-4, rtol=1e-4)
        targets, t_len = out["targets"], batch.frames.shape[1]
        matched = [match(out["logits"][layer][:, None].expand(-1, t_len, -1), out["boxes"][layer],
                         out["masks"][layer], targets, targets.at_stride(4), model.cfg.loss).item()
                   for layer in range(out["logits"].shape[0])]
        assert matched == ref["output.train.single.matched_query"][:, b].tolist()
        losses = model.loss(out, batch)
        expected = {k[len("output.train.single.loss.loss_"):] for k in ref if k.startswith("output.train.single.loss.")}
        assert len(losses) == len(expected) == 5 * model.cfg.transformer.dec_layers
        for key, value in ref.items():
            if not key.startswith("output.train.single.loss.loss_"):
                continue
            name = key[len("output.train.single.loss.loss_"):]
            base, _, layer = name.rpartition("_") if name[-1].isdigit() else (name, "", "")
            rvos_name, weight = LOSSES[base]
            rvos_name += f"_{layer}" if layer else ""
            torch.testing.assert_close(losses[rvos_name].detach(), weight * value[b], atol=1e-5, rtol=1e-4,
                                       msg=f"clip {b} {rvos_name}")


def test_convert_command_writes_a_model_folder_that_loads(tmp_path, parity):
    """``rvos convert mutr`` on the official file (the state dict under ``model``, as the release keeps it): the
    folder loads with the converted weights; decoder box heads that differ from the model's are refused."""
    from rvos.models.convert.rules import ConversionError

    state, _, cfg_json = read_official(FIXTURE)
    model, cfg = rvos_model(cfg_json)
    broken = dict(state)
    broken["transformer.decoder.bbox_embed.0.layers.0.weight"] = broken["bbox_embed.0.layers.0.weight"] + 1
    with pytest.raises(ConversionError, match="bbox_embed.* differs"):
        convert_checkpoint(broken, model)
    convert_command_round_trip("mutr", state, cfg, parity[0], tmp_path, epoch=11)


def test_a_checkpoint_with_the_image_swin_converts_strictly():
    """The released Swin-L checkpoint's layout: the image Swin under ``backbone.0.body.`` by its official names
    (checked against the official Swin in test_swin_image.py), here at the fixture's sizes."""
    from rvos.models.backbones.swin_image import SwinImageBackbone

    state, _, cfg_json = read_official(FIXTURE)
    swin_cfg = cfg_json["swin"]
    image_swin = SwinImageBackbone("t", embed_dim=swin_cfg["embed_dim"], depths=tuple(swin_cfg["depths"]),
                                   heads=tuple(swin_cfg["num_heads"]))
    state = {k: v for k, v in state.items() if not k.startswith("backbone.0.body.")}
    state |= {f"backbone.0.body.{k}": v for k, v in image_swin.swin.state_dict().items()}
    model, _ = rvos_model(cfg_json, ["model.backbone.kind=swin", "model.backbone.variant=t"])
    model.load_state_dict(convert_checkpoint(state, model), strict=True)
    assert isinstance(model.backbone, SwinImageBackbone)
    assert torch.equal(model.backbone.swin.layers[2].blocks[1].attn.qkv.weight,
                       image_swin.swin.layers[2].blocks[1].attn.qkv.weight)


def test_the_release_is_read_from_the_checkpoint():
    from rvos.errors import ConfigError
    from rvos.models.convert.mutr import config_for

    def release(embed: torch.Size, third_stage_blocks: int) -> dict:
        state = {"backbone.0.body.patch_embed.proj.weight": torch.zeros(embed)}
        return state | {f"backbone.0.body.layers.2.blocks.{i}.norm1.weight": torch.zeros(1)
                        for i in range(third_stage_blocks)}

    assert config_for(release((192, 3, 4, 4), 18)) == ("mutr_swin_l_ytvos", ["model.backbone.variant=l"])
    assert config_for(release((128, 3, 1, 4, 4), 18)) == ("mutr_video_swin_b_ytvos", ["model.backbone.variant=b"])
    assert config_for(release((96, 3, 1, 4, 4), 6)) == ("mutr_video_swin_b_ytvos", ["model.backbone.variant=t"])
    with pytest.raises(ConfigError, match="not a released size"):
        config_for(release((16, 3, 4, 4), 2))
    with pytest.raises(ConfigError, match="no Swin backbone"):
        config_for({})
