"""Renaming an official state dict with ordered (pattern, replacement) rules, strictly.

Each key is renamed by the first rule whose regular expression matches it (``re.sub`` with that rule only), or
dropped when that rule's replacement is ``None`` (an official buffer rvos keeps elsewhere, e.g. in its config); a
key no rule matches is an error, as is a renamed key the target module does not have, a key the target has that nothing
provides, or a shape that differs. The error lists every problem at once.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from rvos.errors import RvosError

Rule = tuple[str, str | Callable[[re.Match], str] | None]  # (pattern, replacement as re.sub takes it, or None: drop)


def within(source: str, target: str, rules: Sequence[Rule]) -> list[Rule]:
    """``rules`` written relative to a part, applied under the official prefix ``source`` and giving keys under the
    rvos prefix ``target`` (every pattern must start with ``^``)."""
    out: list[Rule] = []
    for pattern, replacement in rules:
        if not pattern.startswith("^"):
            raise ValueError(f"rule {pattern!r} is not anchored at the start")
        if callable(replacement):
            replacement = (lambda r: lambda m: target + r(m))(replacement)
        elif replacement is not None:
            replacement = target.replace("\\", "\\\\") + replacement
        out.append(("^" + re.escape(source) + pattern[1:], replacement))
    return out


class ConversionError(RvosError):
    pass


def rename(state: dict[str, torch.Tensor], rules: Sequence[Rule], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    compiled = [(re.compile(p), r) for p, r in rules]
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, replacement in compiled:
            if pattern.search(key):
                if replacement is not None:
                    out[pattern.sub(replacement, key, count=1)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} keys match no conversion rule, e.g. {unknown[:5]}")
    return out


def check_against(converted: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Every expected key provided with its shape, and nothing else."""
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    shapes = [f"{k}: {tuple(converted[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(set(converted) & set(expected))
              if converted[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    if shapes:
        problems.append(f"{len(shapes)} with another shape (e.g. {shapes[:3]})")
    if problems:
        raise ConversionError(f"{source} does not fit the rvos model: " + "; ".join(problems)
                              + ". Is it a checkpoint of this method, with this config's sizes?")


def check_shared(state: dict[str, torch.Tensor], alias: str, original: str, source: str, method: str) -> None:
    """Keys under ``alias`` are the official model's second name for the tensors under ``original`` (a module it
    registers twice, such as Deformable DETR's box heads in its decoder): they must be equal, since only one copy
    is kept."""
    aliases = [k for k in state if k.startswith(alias)]
    missing = [original + k[len(alias):] for k in aliases if original + k[len(alias):] not in state]
    if missing:
        raise ConversionError(f"{source}: {len(missing)} of the tensors {alias}* repeats are absent (e.g. {missing[:3]}); "
                              f"this is not a {method} checkpoint as released")
    differ = [k for k in aliases if not torch.equal(state[k], state[original + k[len(alias):]])]
    if differ:
        raise ConversionError(f"{source}: {alias}* differs from {original}* ({differ[:3]}); the official model "
                              f"shares them, so this is not a {method} checkpoint as released")


def convert(state: dict[str, torch.Tensor], rules: Sequence[Rule], module: torch.nn.Module,
            source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename ``state`` by ``rules`` and check it against ``module``'s state dict."""
    converted = rename(state, rules, source)
    check_against(converted, module.state_dict(), source)
    return converted


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint file (detectron2 keeps it under ``model``). Read with
    ``weights_only`` unless ``trust_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    try:
        # ReferFormer-style training scripts save their argparse options beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        hint = "" if trust_pickle else " If you trust the file, pass --trust-pickle to read it with pickle in full."
        reason = " ".join([type(exc).__name__, *str(exc).strip().splitlines()[:1]])
        raise ConversionError(f"{path} could not be read as a PyTorch checkpoint ({reason}).{hint}") from None
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} holds no state dict (a mapping of names to tensors, or one under 'model')")
    return state
