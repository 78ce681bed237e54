"""The backbone adapters: timm image models, torchvision's video Swin, transformers text encoders; each loads
its weights strictly from a local file or folder and says clearly when it cannot."""

import pytest
import timm
import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.hf_text import HFTextEncoder
from rvos.models.backbones.timm_image import TimmImageBackbone
from rvos.models.backbones.video_swin import VideoSwinBackbone

from tiny_text import write_tiny_roberta


def test_timm_backbone_gives_the_feature_maps_it_declares_and_loads_weights_strictly(tmp_path):
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = TimmImageBackbone("resnet18", str(path), out_indices=(1, 2, 3, 4), frozen=True)
    assert backbone.channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    feats = backbone.forward_image(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    backbone.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())
    torch.save({"conv1.weight": reference.conv1.weight}, path)  # a file that lacks most weights
    with pytest.raises(CheckpointError, match="does not hold the weights.*Missing"):
        TimmImageBackbone("resnet18", str(path))
    with pytest.raises(CheckpointError, match="do not exist"):
        TimmImageBackbone("resnet18", str(tmp_path / "absent.pth"))
    with pytest.raises(CheckpointError, match="unknown timm model"):
        TimmImageBackbone("no_such_net", None)


def test_timm_swin_features_are_channels_first():
    backbone = TimmImageBackbone("swin_tiny_patch4_window7_224", None, img_size=(64, 96))
    feats = backbone.forward_image(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(96, 16, 24), (192, 8, 12), (384, 4, 6), (768, 2, 3)]


def test_video_swin_keeps_every_frame_and_mixes_them(tmp_path):
    torch.manual_seed(0)
    backbone = VideoSwinBackbone("t", None, window=(4, 7, 7)).eval()
    assert backbone.temporal and backbone.channels == [96, 192, 384, 768]
    clip = torch.rand(2 * 4, 3, 64, 64)  # two clips of four frames
    feats = backbone.forward_image(clip, clip_length=4)
    assert [tuple(f.shape) for f in feats] == [(8, 96, 16, 16), (8, 192, 8, 8), (8, 384, 4, 4), (8, 768, 2, 2)]
    changed = clip.clone()
    changed[3] = torch.rand(3, 64, 64)  # the last frame of the first clip
    again = backbone.forward_image(changed, clip_length=4)
    assert not torch.allclose(again[-1][0], feats[-1][0])  # frame 0 sees frame 3
    assert torch.allclose(again[-1][4:], feats[-1][4:])  # the other clip does not
    path = tmp_path / "swin3d_t.pth"
    torch.save(backbone.body.state_dict(), path)
    loaded = VideoSwinBackbone("t", str(path), window=(4, 7, 7)).eval()
    torch.testing.assert_close(loaded.forward_image(clip, clip_length=4)[-1], feats[-1])
    torch.save({"head.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="video Swin-T"):
        VideoSwinBackbone("t", str(path))


def test_hf_text_encoder_reads_a_local_folder_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = write_tiny_roberta(tmp_path / "roberta")
    encoder = HFTextEncoder(str(folder), pretrained=True, frozen=True, max_length=12)
    inputs = encoder.tokenize(["the red square moving to the left", "a circle"])
    assert inputs["input_ids"].shape[0] == 2 and inputs["input_ids"][0, 0] == 0  # <s> first
    out = encoder.forward_text(inputs)
    assert out.words.shape == (2, inputs["input_ids"].shape[1], 32) and out.sentence.shape == (2, 32)
    assert out.padding[1].any() and not out.padding[0].any()  # the short sentence is padded
    assert encoder.width == encoder.sentence_dim == 32 and not any(p.requires_grad for p in encoder.parameters())
    random = HFTextEncoder(str(folder), pretrained=False, frozen=False)
    assert any(not torch.equal(a, b) for a, b in zip(random.parameters(), encoder.parameters()))
    with pytest.raises(CheckpointError, match="could not be loaded.*roberta-base"):
        HFTextEncoder("roberta-base")


def test_video_swin_reads_the_original_release_layout(tmp_path):
    """The Kinetics files of the original Video Swin release: ``backbone.layers.i.blocks.j`` names, patch merging
    in ``layers.i.downsample``, a 2-frame patch embedding (summed over time for per-frame features), a head."""
    import re

    torch.manual_seed(0)
    source = VideoSwinBackbone("t", None, window=(4, 7, 7)).eval()
    original = {}
    for key, value in source.body.state_dict().items():
        m = re.match(r"features\.(\d+)\.(.*)", key)
        if m and int(m[1]) % 2 == 0:
            j, rest = m[2].split(".", 1)
            rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            key = f"layers.{int(m[1]) // 2}.blocks.{j}.{rest}"
        elif m:
            key = f"layers.{int(m[1]) // 2}.downsample.{m[2]}"
        original["backbone." + key] = value
    embed = original["backbone.patch_embed.proj.weight"]
    original["backbone.patch_embed.proj.weight"] = torch.cat([embed * 0.25, embed * 0.75], 2)  # 2 frames, sum 1x
    original["backbone.norm.weight"] = torch.ones(768)
    original["cls_head.fc_cls.weight"] = torch.zeros(400, 768)
    path = tmp_path / "swin_tiny_patch244_window877_kinetics400_1k.pth"
    torch.save({"state_dict": original}, path)
    loaded = VideoSwinBackbone("t", str(path), window=(4, 7, 7)).eval()
    clip = torch.rand(4, 3, 64, 64)
    torch.testing.assert_close(loaded.forward_image(clip, 4)[-1], source.forward_image(clip, 4)[-1])


def test_hf_cached_token_ids_equal_the_tokenizers_in_any_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = HFTextEncoder(str(write_tiny_roberta(tmp_path / "roberta")), pretrained=False, max_length=6)
    sentences = ["the red circle moving left", "the box", "a big violet triangle that turns around and away"]

    def expected(batch):
        enc = encoder.tokenizer(batch, padding="longest", truncation=True, max_length=6, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    calls = []
    tokenizer = encoder.tokenizer

    class Counting:
        def __call__(self, batch, **kwargs):
            calls.append(list(batch))
            return tokenizer(batch, **kwargs)

        def __getattr__(self, name):
            return getattr(tokenizer, name)

    monkeypatch.setattr(encoder, "tokenizer", Counting())
    first = encoder.tokenize(sentences[:2])
    again = encoder.tokenize([sentences[1], sentences[2], sentences[1]])
    assert calls == [sentences[:2], [sentences[2]]]  # each sentence tokenized once
    monkeypatch.setattr(encoder, "tokenizer", tokenizer)
    for got, batch in ((first, sentences[:2]), (again, [sentences[1], sentences[2], sentences[1]])):
        ids, mask = expected(batch)
        assert torch.equal(got["input_ids"], ids) and torch.equal(got["attention_mask"], mask)
    assert again["input_ids"].shape[1] == 6  # the long sentence truncated at max_length, as the tokenizer does
    tokenizer.padding_side = "left"  # a tokenizer that pads on the left is padded on the left
    left = encoder.tokenize([sentences[0], "a"])
    ids, mask = expected([sentences[0], "a"])
    assert torch.equal(left["input_ids"], ids) and torch.equal(left["attention_mask"], mask) and mask[1, 0] == 0
    tokenizer.padding_side = "right"
    assert encoder.tokenize([])["input_ids"].shape == (0, 0)
    monkeypatch.setattr("rvos.models.backbones.base.TOKEN_CACHE", 3)  # full: the kept ids start over
    alone = encoder.tokenize(["the green square"])
    assert torch.equal(alone["input_ids"], expected(["the green square"])[0])
    assert len(encoder._token_rows) == 1
