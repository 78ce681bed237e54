"""Official checkpoints -> rvos state dicts, one module per method, strict: every key used, none missing.

A converter module provides ``CONFIG`` (the bundled config of the released checkpoints) and
``convert_checkpoint(state, model, source)``; :func:`official_model` reads a checkpoint file and returns the rvos
model holding its weights (``rvos convert``).
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


def official_model(method: str, path: str | Path, cfg, trust_pickle: bool = False):
    """The model of ``cfg`` with the weights of the official checkpoint at ``path``, in inference mode."""
    from rvos.models.build import build_model
    from rvos.models.convert.rules import read_checkpoint

    if cfg.model.name != method:
        raise ConfigError(f"the config describes a {cfg.model.name!r} model, not {method!r}")
    state = read_checkpoint(path, trust_pickle)
    model = build_model(cfg.model, load_pretrained=False)  # every weight comes from the checkpoint
    model.load_state_dict(converter(method).convert_checkpoint(state, model, str(path)), strict=True)
    return model.eval()
