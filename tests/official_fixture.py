"""Reading the fixtures the make_sgmg_model.py / make_mutr_model.py scripts write from the ReferFormer-lineage
official code, and putting an rvos model in the state those scripts ran the official one in."""

import json
from pathlib import Path

import torch
from safetensors import safe_open


def read_official(path: Path):
    """(the official state dict: float16 parameters as float32, each ``relative_position_index`` from the one copy
    stored, the shared modules' second names filled in; every tensor of the file; the reduced configuration)."""
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    state = {k[len("state."):]: v.float() for k, v in tensors.items() if k.startswith("state.")}
    for key, where in json.loads(meta["buffers"]).items():
        state[key] = tensors[where].long()
    for alias, source in json.loads(meta["shared"]).items():  # e.g. the decoder's view of the box heads
        for key in [k for k in state if k.startswith(source)]:
            state.setdefault(alias + key[len(source):], state[key])
    return state, tensors, json.loads(meta["config"])


def video_swin_overrides(swin: dict) -> list[str]:
    """rvos config overrides for the fixture's reduced official video Swin (no drop path, as the scripts run it)."""
    return [f"model.backbone.embed_dim={swin['embed_dim']}", f"model.backbone.depths={swin['depths']}",
            f"model.backbone.heads={swin['num_heads']}", f"model.backbone.window={swin['window_size']}",
            "model.backbone.drop_path=0.0"]


def dropouts_off(model: torch.nn.Module) -> None:
    """Every dropout and attention dropout at 0: the official runs switched them off, training mode included."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
