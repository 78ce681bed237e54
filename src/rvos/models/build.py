"""Build a method's model from its config."""

from __future__ import annotations

import dataclasses

from torch import nn

from rvos.config import method_class


def build_model(model_cfg, load_pretrained: bool = True) -> nn.Module:
    """The model ``model_cfg.name`` names. With ``load_pretrained=False`` the backbone keeps random weights
    (for inspecting an architecture, or before loading a checkpoint that holds every weight)."""
    if not load_pretrained and getattr(model_cfg, "backbone", None) is not None:
        model_cfg = dataclasses.replace(model_cfg, backbone=dataclasses.replace(model_cfg.backbone, pretrained=None))
    return method_class(model_cfg.name, 1)(model_cfg)
