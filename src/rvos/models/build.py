"""Build a method's model from its config."""

from __future__ import annotations

import dataclasses

from rvos.models.meta.base import RvosModel
from rvos.models.registry import model_class


def without_pretrained(cfg):
    """A copy of config dataclass ``cfg`` in which every pretrained weight source, at any depth, is cleared: a field
    named ``pretrained`` becomes ``None`` (a path or tag) or ``False`` (a flag)."""
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "pretrained" and value:
            changes[f.name] = False if isinstance(value, bool) else None
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = without_pretrained(value)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def weight_sources(cfg, prefix: str = "model") -> dict[str, object]:
    """The pretrained weight sources the config names (dotted key -> value), at any depth."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "pretrained" and value:
            out[f"{prefix}.{f.name}"] = value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out |= weight_sources(value, f"{prefix}.{f.name}")
    return out


def build_model(model_cfg, load_pretrained: bool = True) -> RvosModel:
    """The model ``model_cfg.name`` names. With ``load_pretrained=False`` every backbone keeps random weights (for
    inspecting an architecture, or before loading a checkpoint that holds every weight)."""
    if not load_pretrained:
        model_cfg = without_pretrained(model_cfg)
    return model_class(model_cfg.name)(model_cfg)
