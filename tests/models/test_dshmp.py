"""DsHmp's own behaviour beyond the model contract: decoupled cues, the memory bank (updated by the loss, saved with
the model, sized against the training split), the contrastive ramp, the ablation switches, the selection rules,
the parameter groups, the paper configuration's parts, and the bundled tiny tokenizer."""

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
SPLIT = SimpleNamespace(videos={"v0": Video("v0", ("0",), {"0": Expression("0", SENTENCES[0], ("1",)),
                                                           "1": Expression("1", SENTENCES[1], ("2",)),
                                                           "2": Expression("2", "the moving square", ("1",))})})


def tiny(*overrides):
    cfg = load_config("dshmp_tiny_synth", [*SIZE, *overrides])
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def batch(model, iteration=0) -> ClipBatch:
    g = torch.Generator().manual_seed(1)
    t_len, h, w = 4, 48, 64
    frames = torch.rand(2, t_len, 3, h, w, generator=g) * 0.3
    instances = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        instances[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = True
        instances[1, t, 28:44, 40:56] = True
    return ClipBatch(frames, model.prepare_text(SENTENCES), SENTENCES, [instances, instances],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v0", "v0"], ["0", "1"], iteration)


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
