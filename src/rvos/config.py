"""Typed configs: dataclasses filled from YAML files and ``key=value`` overrides.

A config has four parts: ``model`` (the config class of the method ``model.name`` names in
:mod:`rvos.models.registry`), ``data``, ``train`` and
``infer``. Every key is declared (and documented) on a dataclass field; an unknown key or a value of the wrong
type is a :class:`ConfigError` that says which key and what it expects. ``--config`` takes a bundled config's
name (``vlm_tiny_synth``) or a path to a YAML file; overrides are dotted keys with YAML values
(``train.lr=1e-4``, ``data.root=/data/mevis``, ``model.video_decoder.temporal=false``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rvos.data.synth.generate import SynthSpec
from rvos.errors import ConfigError
from rvos.models.registry import config_class
from rvos.refine.config import RefineConfig

CONFIG_DIR = Path(__file__).parent / "configs"

@dataclass
class DataConfig:
    root: str = ""  # the folder holding the splits (train/, valid_u/, valid/)
    # The split trained on, under ``root``: a split folder or a RefCOCO annotation file
    # (``refcoco/instances_refcoco_train.json``); or a list of them, trained on as one (rvos.data.concat).
    train_split: str | tuple[str, ...] = "train"
    eval_split: str = "valid_u"  # an annotated split for periodic evaluation
    num_frames: int = 8  # frames per training clip
    expressions_per_clip: int = 1  # consecutive batch items sharing one sampled clip, with different sentences
    sampling: str = "global"  # "local": a reference frame and neighbours; "global": one frame per segment
    frame_range: int = 8  # local sampling: neighbours within this many frames of the reference
    short_side: int = 360
    max_long_side: int = 640
    flip_prob: float = 0.5  # horizontal flip (also swaps left/right in the sentence)
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    workers: int = 2  # data loading processes
    # clips read each step for the model's track grounding head alone, per training clip: their annotated objects' exact
    # tracks labelled by every sentence of their video (model.track; 0: none). The head then learns from several times
    # the clips the model segments, at the cost of reading them (benchmarks/results/synth_learning.md)
    track_clips: int = 0
    synth: SynthSpec | None = None  # generate this synthetic benchmark into ``root`` when it is absent

    @property
    def train_splits(self) -> tuple[str, ...]:
        """``train_split`` as a tuple of one or more splits."""
        return (self.train_split,) if isinstance(self.train_split, str) else tuple(self.train_split)


@dataclass
class TrainConfig:
    iterations: int = 100000
    batch_size: int = 4  # clips per optimizer step, over all processes
    lr: float = 5e-5
    scale_lr: bool = False  # linear scaling rule: lr * batch_size / base_batch_size
    base_batch_size: int = 4  # the batch size ``lr`` was tuned for
    backbone_lr_mult: float = 1.0  # for a trainable backbone's image tower
    text_lr_mult: float = 1.0  # for a trainable backbone's text tower
    weight_decay: float = 0.05
    schedule: str = "step"  # "step", "cosine" or "constant"
    steps: tuple[float, ...] = (0.89,)  # step schedule: fractions of training where lr drops by ``gamma``
    gamma: float = 0.1
    warmup_iters: int = 0
    grad_clip: float = 0.01  # max global gradient norm (0 = off)
    accumulation: int = 1  # micro-batches per optimizer step
    amp: bool = True  # bf16 autocast on GPUs (ignored on CPUs)
    seed: int = 0
    log_period: int = 20
    checkpoint_period: int = 5000
    eval_period: int = 0  # evaluate on data.eval_split every N iterations (0 = only at the end)
    max_minutes: float = 0.0  # stop after this much training time (0 = no limit), then checkpoint and evaluate
    # with max_minutes: the schedule (warm-up and decay) runs over the minutes as over the iterations, at whichever is
    # further along, so that where the time limit stops a run before its iterations (a slower machine), the learning
    # rate has still come down to the schedule's end; the learning rate then depends on the machine's speed
    time_schedule: bool = False
    # weights to start from: a run folder (its last checkpoint), a model folder or its model.safetensors (e.g.
    # `rvos convert` output), of the same method and sizes; SgMg fine-tunes its image pre-training this way
    init: str | None = None


@dataclass
class InferConfig:
    window: int = 36  # frames encoded at once; longer videos stream window by window
    score_threshold: float | None = None  # overrides model.score_threshold when set
    # SAM-HQ refinement of every mask (rvos.refine.RefineConfig; the PVUW 2024 MeViS 2nd-place report's), for
    # rvos infer / predict / serve / refdavis and the API; None: off. A mapping turns it on: infer.refine={} (the
    # defaults: ViT-L from the Hugging Face cache) or infer.refine.sam=DIR (a local folder)
    refine: RefineConfig | None = None
    # instance masks for a method that reads them (MUTR's instance block, model.instances.enabled): a video instance
    # segmentation model's results in the YouTube-VIS format (a JSON file, with instance_videos: the VIS dataset JSON
    # they refer to, e.g. DVIS run on the split's frames), or "annotated": each video's annotated objects visible in
    # the window (the synthetic benchmark's stand-in for a VIS model); None: none (the learned queries)
    instances: str | None = None
    instance_videos: str | None = None

    def __post_init__(self):
        if self.instances not in (None, "annotated") and not self.instance_videos:
            raise ValueError("infer.instances names a results file: set infer.instance_videos to the VIS dataset "
                             "JSON its video ids refer to")


@dataclass
class Config:
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item, *_) = typing.get_args(tp)
        return tuple(_convert(v, item, f"{key}[]") for v in value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, recursively, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]} (valid keys here: {', '.join(names)})")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a config class's own check of its values
        raise ConfigError(str(exc)) from None


def config_from_dict(data: dict) -> Config:
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConfigError("a config needs a 'model' mapping with a 'name' (the method, e.g. vlm)")
    model_cls = config_class(data["model"].get("name", ""))
    rest = {k: v for k, v in data.items() if k != "model"}
    cfg = from_dict(Config, {"model": {}, **rest})
    cfg.model = from_dict(model_cls, data["model"], "model")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    if cfg.data.sampling not in ("local", "global"):
        raise ConfigError(f"data.sampling: expected 'local' or 'global', got {cfg.data.sampling!r}")
    if cfg.train.schedule not in ("step", "cosine", "constant"):
        raise ConfigError(f"train.schedule: expected 'step', 'cosine' or 'constant', got {cfg.train.schedule!r}")
    if not cfg.data.train_splits:
        raise ConfigError("data.train_split: an empty list names no split to train on")
    for key in ("num_frames", "short_side", "max_long_side", "expressions_per_clip"):
        if getattr(cfg.data, key) < 1:
            raise ConfigError(f"data.{key} must be at least 1")
    for key in ("iterations", "batch_size", "accumulation", "base_batch_size"):
        if getattr(cfg.train, key) < 1:
            raise ConfigError(f"train.{key} must be at least 1")
    if cfg.infer.window < 1:
        raise ConfigError("infer.window must be at least 1")


def bundled_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _set(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise ConfigError(f"override {dotted}: {k} is not a mapping")
        node = node[k]
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.lr=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out


def load_config(spec: str, overrides: list[str] = ()) -> Config:
    """A bundled config's name or a YAML path, then ``key=value`` overrides."""
    path = Path(spec)
    if not path.is_file():
        bundled = CONFIG_DIR / f"{spec}.yaml"
        if not bundled.is_file():
            raise ConfigError(f"config {spec!r} is neither a file nor a bundled config "
                              f"(bundled: {', '.join(bundled_configs())})")
        path = bundled
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc})") from None
    for key, value in parse_overrides(list(overrides)):
        _set(data, key, value)
    return config_from_dict(data)
