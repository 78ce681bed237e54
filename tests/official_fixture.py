"""Reading the fixtures the make_sgmg_model.py / make_mutr_model.py scripts write from the ReferFormer-lineage
official code, and putting an rvos model in the state those scripts ran the official one in."""

import argparse
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


def convert_command_round_trip(method: str, state: dict, cfg, expected: torch.nn.Module, folder: Path,
                               epoch: int) -> None:
    """``rvos convert METHOD`` on the official state dict saved as the official training script saves it (under
    ``model``, beside the epoch and its argparse options), with the reduced config: the folder it writes must load
    with exactly ``expected``'s weights."""
    from rvos.cli import main
    from rvos.engine.checkpoint import load_model

    checkpoint = folder / f"{method}_official.pth"
    torch.save({"model": state, "epoch": epoch, "args": argparse.Namespace(backbone="video_swin_b_p4w7")}, checkpoint)
    config = folder / "reduced.yaml"  # JSON is YAML
    config.write_text(json.dumps(cfg.to_dict()))
    assert main(["-q", "convert", method, str(checkpoint), "--out", str(folder / "m"), "--config", str(config)]) == 0
    loaded, _ = load_model(folder / "m")
    reference = expected.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
