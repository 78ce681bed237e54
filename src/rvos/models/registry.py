"""The methods rvos implements: a name -> module table, read lazily (as transformers' auto classes are).

A method is a module under ``rvos.models.meta`` holding one :class:`rvos.models.meta.base.RvosModel` subclass;
its ``config_class`` is the dataclass of ``model:`` in a config. Adding a method is adding a module, a line here,
and a ``<method>_tiny_synth`` config; nothing in the engine, the API or the CLI names a method.
"""

from __future__ import annotations

import importlib

from rvos.errors import ConfigError

# method name -> (module, model class)
METHODS: dict[str, tuple[str, str]] = {
    "vlm": ("rvos.models.meta.vlm", "VLMModel"),
    "dshmp": ("rvos.models.meta.dshmp", "DsHmpModel"),
    "sgmg": ("rvos.models.meta.sgmg", "SgMgModel"),
    "mutr": ("rvos.models.meta.mutr", "MutrModel"),
}


def method_names() -> list[str]:
    return list(METHODS)


def model_class(name: str):
    """The model class of method ``name`` (its module is imported now, not before)."""
    if name not in METHODS:
        raise ConfigError(f"unknown method model.name={name!r} (known: {', '.join(METHODS)})")
    module, cls = METHODS[name]
    return getattr(importlib.import_module(module), cls)


def config_class(name: str):
    """The config dataclass of method ``name``."""
    return model_class(name).config_class
