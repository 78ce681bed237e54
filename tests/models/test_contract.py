"""The model contract, for every registered method with its tiny config and random weights: training, saving,
streaming inference and its agreement with the model's own forward pass."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.torch
import torch

from rvos.data.schema import Expression, Video
from rvos.data.video import VideoSource
from rvos.engine.checkpoint import load_model, save_model
from rvos.engine.inference import Predictor
from rvos.engine.optim import build_optimizer
from rvos.errors import CheckpointError, ConfigError
from rvos.models.build import build_model, without_pretrained
from rvos.models.meta.base import ClipBatch, RvosModel, describe_model
from rvos.models.registry import config_class, model_class

from contract import KEEP_ALL, METHODS, random_model, tiny_config

SIZE = ["data.short_side=48", "data.max_long_side=64"]


def clip_batch(model, t_len=4, h=48, w=64) -> ClipBatch:
    """Two clips: a square moving right beside a still one, and a sentence for each."""
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(2, t_len, 3, h, w, generator=g) * 0.3
    instances = torch.zeros(2, t_len, h, w, dtype=torch.bool)
    for t in range(t_len):
        instances[0, t, 10:26, 4 + 6 * t:20 + 6 * t] = True
        instances[1, t, 28:44, 40:56] = True
    for b in range(2):
        frames[b, :, 0][instances[0]] = 0.9
        frames[b, :, 2][instances[1]] = 0.9
    sentences = ["the red square moving right", "the blue square that stays"]
    return ClipBatch(frames, model.prepare_text(sentences), sentences, [instances, instances],
                     [torch.tensor([True, False]), torch.tensor([False, True])], ["v0", "v0"], ["0", "1"])


# the training split the batch's clips come from, for a method whose loss reads it (DsHmp's memory bank)
SPLIT = SimpleNamespace(videos={"v0": Video("v0", ("0",), {"0": Expression("0", "the red square moving right", ("1",)),
                                                           "1": Expression("1", "the blue square that stays", ("2",))})})


@pytest.mark.parametrize("method", METHODS)
def test_registry_finds_the_model_and_its_config(method):
    cls = model_class(method)
    assert issubclass(cls, RvosModel) and config_class(method) is cls.config_class
    with pytest.raises(ConfigError, match="unknown method"):
        model_class("no-such-method")


@pytest.mark.parametrize("method", METHODS)
def test_loss_is_finite_and_falls_on_a_fixed_batch(method):
    cfg = tiny_config(method, *SIZE)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    batch = clip_batch(model)
    model.prepare_training(SPLIT)
    opt = build_optimizer(model, cfg.train)
    losses = []
    for _ in range(10):
        parts = model.loss(model(batch), batch)
        loss = sum(parts.values())
        assert torch.isfinite(loss), parts
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("method", METHODS)
def test_a_clip_whose_sentence_refers_to_nothing_trains(method):
    """MeViS v2's no-target expressions: the clip's objects are all unreferred; the loss stays finite and reaches the
    weights."""
    cfg = tiny_config(method, *SIZE)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    batch = clip_batch(model)
    batch.referred[1] = torch.tensor([False, False])
    split = SimpleNamespace(videos={"v0": Video("v0", ("0",), {
        "0": Expression("0", "the red square moving right", ("1",)),
        "1": Expression("1", "the green triangle jumping", ())})})
    model.prepare_training(split)
    parts = model.loss(model(batch), batch)
    loss = sum(parts.values())
    assert torch.isfinite(loss), parts
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_save_and_load_is_an_exact_round_trip(method, tmp_path):
    cfg = tiny_config(method, *SIZE)
    model = random_model(cfg)
    save_model(tmp_path / "m", model, cfg)
    loaded, loaded_cfg = load_model(tmp_path / "m")
    assert loaded_cfg == cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    batch = clip_batch(model)
    with torch.no_grad():
        for x, y in zip(model.postprocess(model(batch)), loaded.postprocess(loaded(batch))):
            torch.testing.assert_close(x.logits, y.logits, rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_a_checkpoint_of_another_method_is_refused_clearly(method, tmp_path):
    cfg = tiny_config(method, *SIZE)
    model = random_model(cfg)
    save_model(tmp_path / "m", model, cfg)
    weights = tmp_path / "m" / "model.safetensors"
    safetensors.torch.save_model(model, str(weights), metadata={"rvos_method": "another-method"})
    with pytest.raises(CheckpointError, match="holds a 'another-method' model"):
        load_model(tmp_path / "m")


def _video(frames: np.ndarray) -> VideoSource:
    return VideoSource(len(frames), frames.shape[1:3], lambda idx: frames[list(idx)], "clip")


def _frames(t_len=9, h=48, w=64) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = rng.integers(40, 90, (t_len, h, w, 3), dtype=np.uint8)
    for t in range(t_len):
        frames[t, 10:26, 2 + 4 * t:18 + 4 * t] = (220, 40, 40)
    return frames


@pytest.mark.parametrize("method", METHODS)
def test_windowed_inference_equals_whole_video_inference(method):
    cfg = tiny_config(method, *SIZE, KEEP_ALL)
    model = random_model(cfg)
    if not model.window_invariant:
        pytest.skip(f"{method} reads the frames of a window together: windows of another size see other features")
    frames, texts = _frames(), ["the red square moving right", "the object"]
    whole = list(Predictor(model, cfg, window=9).predict(_video(frames), texts))
    windowed = list(Predictor(model, cfg, window=4).predict(_video(frames), texts))
    a, b = np.stack([f.masks for f in whole]), np.stack([f.masks for f in windowed])
    assert a.any() and not a.all()
    assert (a == b).mean() > 0.999  # float summation order differs between window sizes
    np.testing.assert_allclose(np.stack([f.scores for f in whole]), np.stack([f.scores for f in windowed]), atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_predictor_on_one_window_equals_the_models_own_selection(method):
    cfg = tiny_config(method, *SIZE, KEEP_ALL)
    model = random_model(cfg)
    frames, text = _frames(t_len=5), "the red square moving right"
    results = list(Predictor(model, cfg, window=8).predict(_video(frames), [text]))
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)[None]
    batch = ClipBatch(clip, model.prepare_text([text]), [text], [], [], ["clip"], ["0"])
    with torch.no_grad():
        (own,) = model.postprocess(model(batch), cfg.infer.score_threshold)
    expected = own.masks(model.mask_stride, (48, 64), (48, 64))
    masks = torch.from_numpy(np.stack([r.masks[0] for r in results]))
    assert expected.any() and (masks == expected).float().mean() > 0.999
    np.testing.assert_allclose(np.stack([r.scores[0] for r in results]), own.scores.numpy(), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_parameter_report_counts_every_parameter_once(method):
    cfg = tiny_config(method, *SIZE)
    model = build_model(cfg.model)
    report = describe_model(model)
    parts = [d for name, d in report.items() if name != "total" and "parameters" in d]
    assert sum(d["parameters"] for d in parts) == report["total"]["parameters"] == sum(
        p.numel() for p in model.parameters())
    groups = {model.parameter_group(n) for n, _ in model.named_parameters()}
    assert groups <= {"head", "backbone", "text"} and "head" in groups


def test_without_pretrained_clears_every_weight_source_at_any_depth():
    from dataclasses import dataclass, field

    @dataclass
    class Text:
        model: str = "roberta-base"
        pretrained: bool = True

    @dataclass
    class Image:
        pretrained: str | None = "swin.pth"
        frozen: bool = True

    @dataclass
    class Method:
        name: str = "x"
        image: Image = field(default_factory=Image)
        text: Text = field(default_factory=Text)

    cleared = without_pretrained(Method())
    assert cleared.image.pretrained is None and cleared.text.pretrained is False
    assert cleared.text.model == "roberta-base" and cleared.image.frozen
    assert Method().image.pretrained == "swin.pth"  # the original is untouched
    json.dumps(cleared.__dict__, default=str)
