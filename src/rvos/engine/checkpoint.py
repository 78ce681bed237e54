"""Model files: the weights as safetensors and the resolved config as JSON, in one folder.

``save_model`` / ``load_model`` are exact inverses: the loaded model has the same config and bit-identical
weights. A folder from another method, a corrupt file, or weights that do not fit the config is a
:class:`CheckpointError` that says so.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

import rvos
from rvos.config import Config, config_from_dict
from rvos.errors import CheckpointError, ConfigError
from rvos.fileio import atomic_folder, atomic_path, write_json, write_text

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(directory: str | os.PathLike, model: nn.Module, cfg: Config) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    with atomic_path(directory / MODEL_FILE) as tmp:
        safetensors.torch.save_model(model, str(tmp), metadata={"rvos_method": cfg.model.name,
                                                                "rvos_version": rvos.__version__})
    write_json(directory / CONFIG_FILE, {"rvos_version": rvos.__version__, "config": cfg.to_dict()}, indent=1)
    return directory


def read_config(directory: str | os.PathLike) -> Config:
    path = Path(directory) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist: {directory} is not an rvos model folder") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    try:
        return config_from_dict(data["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path} does not hold an rvos config ({exc})") from None


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """The model saved in ``directory`` and its config."""
    from rvos.models.build import build_model

    directory = Path(directory)
    if directory.is_file():
        directory = directory.parent
    cfg = read_config(directory)
    model = build_model(cfg.model, load_pretrained=False)
    load_weights(model, directory, cfg, device)
    return model.to(device).eval(), cfg


def load_weights(model: nn.Module, directory: Path, cfg: Config, device: str | torch.device = "cpu") -> None:
    """Load ``directory/model.safetensors`` into ``model`` (built from ``cfg``), strictly, with a clear error when
    the file is missing, unreadable, or holds another model."""
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist")
    try:
        with safetensors.safe_open(str(weights), framework="pt") as f:
            method = (f.metadata() or {}).get("rvos_method")
    except Exception as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc})") from None
    if method is not None and method != cfg.model.name:
        raise CheckpointError(f"{weights} holds a {method!r} model but {CONFIG_FILE} describes {cfg.model.name!r}")
    try:
        safetensors.torch.load_model(model, str(weights), strict=True, device=str(device))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:300]
        raise CheckpointError(f"{weights} does not fit the {cfg.model.name!r} model of {CONFIG_FILE}: {first}") from None


# ----------------------------------------------------------------------------------------- training checkpoints

STATE_FILE = "state.pt"
POINTER_FILE = "last_checkpoint"


def rng_state() -> dict:
    """Every random generator's state, in types ``torch.load(weights_only=True)`` reads back."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: nn.Module, cfg: Config, state: dict,
                    keep: int = 2) -> Path:
    """Write ``checkpoints/step_<step>`` (model, config, training ``state``) into a hidden folder, rename it
    into place and then point ``last_checkpoint`` at it, so a run killed at any moment leaves its last good
    checkpoint readable. Older checkpoints beyond the ``keep`` most recent are removed."""
    run_dir = Path(run_dir)
    ckpts = run_dir / "checkpoints"
    name = f"step_{step:07d}"
    for stale in ckpts.glob(".step_*.partial") if ckpts.is_dir() else []:  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    final = ckpts / name
    with atomic_folder(final) as tmp:
        save_model(tmp, model, cfg)
        with atomic_path(tmp / STATE_FILE) as path:
            torch.save(state, path)
    write_text(run_dir / POINTER_FILE, name + "\n")
    done = sorted(p for p in ckpts.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in done[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's last complete checkpoint folder, or None when it has none."""
    run_dir = Path(run_dir)
    pointer = run_dir / POINTER_FILE
    if pointer.is_file():
        candidate = run_dir / "checkpoints" / pointer.read_text().strip()
        if (candidate / STATE_FILE).is_file() and (candidate / MODEL_FILE).is_file():
            return candidate
    complete = sorted(p for p in (run_dir / "checkpoints").glob("step_*")
                      if (p / STATE_FILE).is_file() and (p / MODEL_FILE).is_file())
    return complete[-1] if complete else None


def load_state(checkpoint: str | os.PathLike) -> dict:
    path = Path(checkpoint) / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable training state ({type(exc).__name__}: {exc})") from None


def find_model(path: str | os.PathLike) -> Path:
    """A model folder from a run folder (its last checkpoint), a model folder, or a model.safetensors file."""
    path = Path(path)
    if path.is_file():
        return path.parent
    if (path / MODEL_FILE).is_file():
        return path
    if path.is_dir():
        ckpt = last_checkpoint(path)
        if ckpt is not None:
            return ckpt
        raise CheckpointError(f"{path} holds no checkpoint yet (no {MODEL_FILE}, no checkpoints/step_*)")
    raise CheckpointError(f"{path} does not exist")
