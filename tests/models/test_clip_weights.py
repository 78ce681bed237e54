"""CLIP weights load from the layouts users have: a file, a Hugging Face style folder, the hub cache."""

import json

import open_clip
import pytest
import safetensors.torch
import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.clip import CLIPBackbone, resolve_weights

NAME = "rvos-tiny-convnext"


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(3)
    return open_clip.create_model(NAME, pretrained=None).state_dict()


def assert_loaded(backbone, reference):
    state = backbone.clip.state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_weights_load_from_a_bin_file_and_a_hub_style_folder(tmp_path, reference):
    torch.save(reference, tmp_path / "weights.bin")
    assert_loaded(CLIPBackbone(NAME, str(tmp_path / "weights.bin")), reference)
    folder = tmp_path / "CLIP-tiny"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config(NAME)}))
    safetensors.torch.save_file(reference, folder / "open_clip_model.safetensors")
    assert resolve_weights(NAME, str(folder)).name == "open_clip_model.safetensors"
    assert_loaded(CLIPBackbone(NAME, str(folder)), reference)


def test_weights_load_from_the_hugging_face_cache(tmp_path, reference, monkeypatch):
    monkeypatch.setenv("RVOS_OFFLINE", "1")
    snapshot = tmp_path / "models--rvos--clip-tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--rvos--clip-tiny" / "refs").mkdir()
    (tmp_path / "models--rvos--clip-tiny" / "refs" / "main").write_text("0123abcd")
    torch.save(reference, snapshot / "open_clip_pytorch_model.bin")
    backbone = CLIPBackbone(NAME, "hf-hub:rvos/clip-tiny", cache_dir=str(tmp_path))
    assert_loaded(backbone, reference)
    assert backbone.frozen and not any(p.requires_grad for p in backbone.parameters())


def test_missing_weights_offline_say_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("RVOS_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup.*"
                                              r"model.backbone.pretrained="):
        resolve_weights("convnext_large_d_320", "laion2b_s29b_b131k_ft_soup", cache_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="not a file, a folder, or a pretrained tag"):
        resolve_weights("convnext_large_d_320", "no-such-tag")


def test_weights_of_another_model_or_a_corrupt_file_are_refused(tmp_path, reference):
    other = {k: v for k, v in reference.items() if not k.startswith("visual")}
    torch.save(other, tmp_path / "partial.bin")
    with pytest.raises(CheckpointError, match="does not hold the weights of this CLIP model"):
        CLIPBackbone(NAME, str(tmp_path / "partial.bin"))
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        CLIPBackbone(NAME, str(tmp_path / "corrupt.safetensors"))
    folder = tmp_path / "rn50"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config("RN50")}))
    torch.save(reference, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="another CLIP model"):
        resolve_weights(NAME, str(folder))


def test_frozen_backbone_stays_in_eval_mode_and_text_features_match_encode_text(reference):
    backbone = CLIPBackbone(NAME, None, frozen=True)
    backbone.train()
    assert not backbone.clip.training
    sentences = ["a red circle moving left", "the box"]
    text = backbone.tokenize(sentences)
    t = backbone.forward_text(text)
    words, padding, sentence = t.words, t.padding, t.sentence
    # cut after the longest sentence (<sot> a red circle moving left <eot>): exactly CLIP's full-context features
    torch.testing.assert_close(sentence, backbone.clip.encode_text(backbone.tokenizer(sentences)))
    assert words.shape == (2, 7, 128) and padding[1].sum() == 7 - 4  # <sot> the box <eot>
    feats = backbone.forward_image(torch.rand(1, 3, 64, 96))
    assert [f.shape[1:] for f in feats] == [(32, 16, 24), (64, 8, 12), (128, 4, 6), (256, 2, 3)]


@pytest.mark.slow
def test_resnet50_clip_gives_four_strides():
    backbone = CLIPBackbone("RN50-quickgelu", None)
    assert backbone.kind == "resnet" and backbone.channels == [256, 512, 1024, 2048]


def test_mean_sentence_pooling_averages_the_sentences_tokens():
    torch.manual_seed(0)
    backbone = CLIPBackbone(NAME, None, frozen=True, sentence_pooling="mean")
    text = backbone.tokenize(["a red circle moving left", "the box"])
    t = backbone.forward_text(text)
    words = t.words[1, :4]  # <sot> the box <eot>; the rest is padding
    proj = backbone.clip.text_projection
    expected = proj(words.mean(0)) if isinstance(proj, torch.nn.Linear) else words.mean(0) @ proj
    torch.testing.assert_close(t.sentence[1], expected)
    with pytest.raises(ValueError, match="expected 'eot' or 'mean'"):
        CLIPBackbone(NAME, None, sentence_pooling="max")


def test_cached_token_ids_equal_the_tokenizers_in_any_batch(monkeypatch):
    backbone = CLIPBackbone(NAME, None, frozen=True)
    sentences = ["the red circle moving left", "the box", "a big violet triangle that turns around"]
    expected = backbone.tokenizer(sentences)
    calls = []
    tokenizer = backbone.tokenizer
    monkeypatch.setattr(backbone, "tokenizer", lambda s: calls.append(list(s)) or tokenizer(s))
    first = backbone.tokenize(sentences[:2])["tokens"]
    again = backbone.tokenize([sentences[1], sentences[2], sentences[1]])["tokens"]
    assert calls == [sentences[:2], [sentences[2]]]  # each sentence tokenized once
    assert torch.equal(first, expected[:2, : first.shape[1]])  # cut after the longest sentence's end of text
    assert torch.equal(again, expected[[1, 2, 1], : again.shape[1]])
    assert again.shape[1] == int(expected[2].argmax()) + 1
    assert backbone.tokenize([])["tokens"].shape[0] == 0
    monkeypatch.setattr("rvos.models.backbones.base.TOKEN_CACHE", 3)  # full: the kept ids start over
    alone = backbone.tokenize(["the green square"])["tokens"]
    assert torch.equal(alone, tokenizer(["the green square"])[:, : alone.shape[1]])
    assert len(backbone._token_rows) == 1
