"""Tiny random models of every registered method, for the tests of the engine, the API and ``rvos serve``."""

import torch

from rvos.config import load_config
from rvos.models.build import build_model
from rvos.models.registry import method_names

METHODS = method_names()
# every query passes the score threshold (probabilities are > 0), so a union-of-queries method shows its masks
KEEP_ALL = "infer.score_threshold=0.0"


# what the tiny configs of SgMg and MUTR add to learn on a CPU, switched off: the official model's outputs, losses and
# state dict (the parity fixtures, the official selection rule)
OFFICIAL_PATH = ("model.loss.instance_targets=false", "model.track.enabled=false", "model.selection=top1")
# and SgMg's own: the queries' learned start positions, query q of every frame one track, as the official
# inference reads it, and the official two stages of the segment-and-optimize
SGMG_OFFICIAL_PATH = (*OFFICIAL_PATH, "model.proposals=false", "model.link=false", "model.duplicate_iou=0",
                      "model.fine=0", "model.track_refined=false")
# and MUTR's: the first decoder layer's heads and boxes read the last layer's video queries at inference, the
# decoder's self-attention reads a frame's queries alone, and the queries start at their learned positions
MUTR_OFFICIAL_PATH = (*OFFICIAL_PATH, "model.infer_heads=first", "model.clip_queries=false", "model.proposals=false")


def tiny_config(method: str = "vlm", *overrides: str):
    """The method's ``<method>_tiny_synth`` config, with the given overrides."""
    return load_config(f"{method}_tiny_synth", list(overrides))


@torch.no_grad()
def coverage(model, cfg, frames: torch.Tensor, sentences: list[str]) -> float:
    """The fraction of pixels the model's masks cover on a clip, through its inference session."""
    session = model.start_session(model.prepare_text(sentences), cfg.infer.score_threshold)
    frames = model.pad(frames)
    session.observe(frames, 0)
    session.decode()
    return float(torch.stack([(out.union > 0).float().mean() for out in session.predict(frames, 0)]).mean())


def random_model(cfg, seed: int = 0, tries: int = 20):
    """A random-weight model of ``cfg`` (the first seed from ``seed`` on) whose masks on a random clip cover
    between 5% and 95% of the pixels: with random weights they may be empty or cover everything, and a test of
    the inference path needs masks that show something."""
    probe = torch.rand(4, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    for s in range(seed, seed + tries):
        torch.manual_seed(s)
        model = build_model(cfg.model).eval()
        if getattr(model, "links_objects", False):  # slots that track the frame queries on an object
            model.even_objectness_prior()
        if 0.05 < coverage(model, cfg, probe, ["the red square", "the object moving left"]) < 0.95:
            return model
    raise AssertionError(f"no seed in {seed}..{seed + tries - 1} gives a random model with partial masks")
