"""Official checkpoints -> rvos state dicts, one module per method, strict: every key used, none missing.

A converter module provides ``CONFIG`` (the bundled config of the released checkpoints), optionally
``config_for(state)`` (the config and overrides of a checkpoint, where the releases differ in their backbones), and
``convert_checkpoint(state, model, source)``; :func:`official_model` takes a checkpoint and returns the rvos model
holding its weights (``rvos convert``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from rvos.errors import ConfigError

CONVERTERS = {"dshmp": "rvos.models.convert.dshmp", "sgmg": "rvos.models.convert.sgmg", "mutr": "rvos.models.convert.mutr"}


def converter(method: str):
    if method not in CONVERTERS:
        raise ConfigError(f"no converter for {method!r} (known: {', '.join(CONVERTERS)})")
    return importlib.import_module(CONVERTERS[method])


def checkpoint_config(method: str, state: dict) -> tuple[str, list[str]]:
    """(config name, overrides) the released checkpoint ``state`` converts to."""
    module = converter(method)
    return module.config_for(state) if hasattr(module, "config_for") else (module.CONFIG, [])


def official_model(method: str, checkpoint: str | Path | dict, cfg, trust_pickle: bool = False,
                   source: str | None = None):
    """The model of ``cfg`` with the weights of the official checkpoint (a file, or its state dict already read), in
    inference mode."""
    from rvos.models.build import build_model
    from rvos.models.convert.rules import read_checkpoint

    if cfg.model.name != method:
        raise ConfigError(f"the config describes a {cfg.model.name!r} model, not {method!r}")
    state = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint, trust_pickle)
    source = source or (str(checkpoint) if not isinstance(checkpoint, dict) else "checkpoint")
    model = build_model(cfg.model, load_pretrained=False)  # every weight comes from the checkpoint
    model.load_state_dict(converter(method).convert_checkpoint(state, model, source), strict=True)
    return model.eval()
