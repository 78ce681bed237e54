"""Where pretrained backbone weights come from: a local file, a local folder, or the Hugging Face cache
(downloaded into it first unless offline). Nothing is fetched at import."""

from __future__ import annotations

from pathlib import Path

import torch

from rvos.errors import CheckpointError
from rvos.models.backbones.base import offline


def hub_file(repo: str, filenames: tuple[str, ...], cache_dir: str | None, what: str) -> Path:
    """The first of ``filenames`` in Hugging Face repo ``repo``: from the cache, or downloaded unless offline."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in filenames:
        cached = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    errors = []
    if not offline():
        for name in filenames:
            try:
                return Path(hf_hub_download(repo, name, cache_dir=cache_dir))
            except Exception as exc:  # not in the repo, or no network
                errors.append(f"{name}: {type(exc).__name__}")
    reason = "offline (HF_HUB_OFFLINE / RVOS_OFFLINE)" if offline() else f"download failed ({'; '.join(errors)})"
    raise CheckpointError(f"{what} {repo!r} is not in the Hugging Face cache and could not be fetched: {reason}. "
                          f"Download {filenames[0]} from https://huggingface.co/{repo} and point the config at the "
                          "file (or its folder)")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a pickled checkpoint (loaded with ``weights_only=True``); the
    ``state_dict`` / ``model`` / ``module`` entry when the file wraps one."""
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            return safetensors.torch.load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load every tensor of ``state`` into ``module``, with a clear error naming what is missing or unexpected."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:400]
        raise CheckpointError(f"{path} does not hold the weights of this {what}: {first}") from None
