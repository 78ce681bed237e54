"""``rvos train``: build everything a run needs from its config, then hand it to the :class:`Trainer`.

A run folder holds ``config.json`` (the resolved config), ``run.json`` (processes, effective batch size and
learning rate), ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/step_N/`` with ``last_checkpoint`` naming the
newest complete one, and ``eval/step_N/`` (predictions and scores).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

import rvos
from rvos.config import Config
from rvos.data.clips import ClipDataset, StepBatches, collate
from rvos.data.concat import open_splits
from rvos.data.synth.generate import read_spec, write_benchmark
from rvos.data.transforms import ClipTransform
from rvos.engine import distributed
from rvos.engine.allocator import retain_freed_memory
from rvos.engine.checkpoint import (find_model, last_checkpoint, load_state, load_weights, read_config,
                                   set_rng_state)
from rvos.engine.hooks import CheckpointHook, EvalHook, LogHook, TimeLimitHook
from rvos.engine.inference import Predictor
from rvos.engine.machine import describe_machine
from rvos.engine.optim import TrainingClock, build_optimizer, build_scheduler, effective_lr
from rvos.engine.predict_split import predict_split
from rvos.engine.trainer import HookBase, Trainer
from rvos.errors import ConfigError, DataError, RvosError
from rvos.eval.evaluate import evaluate
from rvos.fileio import write_json
from rvos.models.build import build_model

log = logging.getLogger(__name__)


def prepare_data(cfg: Config, progress: bool = True) -> Path:
    """The dataset root; a synthetic benchmark named by ``data.synth`` is generated there when absent."""
    if not cfg.data.root:
        raise ConfigError("data.root is not set: pass data.root=DIR (the folder holding the splits)")
    root = Path(cfg.data.root)
    spec = cfg.data.synth
    if spec is not None:
        existing = read_spec(root)
        if existing is None:
            for name in cfg.data.train_splits:
                if (root / name).exists():
                    raise DataError(f"{root} holds a {name}/ split but no synth.json: it is not a "
                                    "synthetic benchmark rvos generated; choose another data.root")
            log.info("generating the synthetic benchmark into %s", root)
            write_benchmark(root, spec, progress=progress)
        elif existing != spec:
            log.warning("%s holds a synthetic benchmark with other settings than data.synth (%s); using it as it is",
                        root, existing)
    for name in cfg.data.train_splits:
        if not (root / name).exists():
            raise DataError(f"{root / name} does not exist: set data.root to the folder holding the '{name}' split")
    return root


def evaluate_model(model, cfg: Config, device, split_dir: Path, out_dir: Path, progress: bool):
    """Predict ``split_dir`` into ``out_dir/pred``, score it into ``out_dir/scores.json``; the EvalResult."""
    was_training = model.training
    predict_split(Predictor(model, cfg, device), split_dir, out_dir / "pred", progress=progress)
    model.train(was_training)
    result = evaluate(split_dir, out_dir / "pred", workers=1, progress=False)
    write_json(out_dir / "scores.json", result.to_json(), indent=1)
    return result


def eval_fn(cfg: Config, device, progress: bool):
    """(model, out_dir) -> EvalResult on ``data.eval_split``."""
    split_dir = Path(cfg.data.root) / cfg.data.eval_split
    return lambda model, out_dir: evaluate_model(model, cfg, device, split_dir, out_dir, progress)


def train(cfg: Config | None, run_dir: str | os.PathLike, resume: bool = False, device: str | None = None,
          progress: bool = True, hooks: list[HookBase] = ()) -> dict:
    """Train ``cfg`` into ``run_dir`` (or continue the run there with ``resume``). Returns a summary. ``hooks``: more
    :class:`~rvos.engine.trainer.HookBase` to run after the run's own (logs, evaluation, checkpoints, time limit)."""
    run_dir = Path(run_dir)
    retain_freed_memory()  # every step allocates what the step before freed
    d = distributed.setup(device)
    try:
        return _train(cfg, run_dir, resume, d, progress, list(hooks))
    finally:
        distributed.teardown()


def _train(cfg, run_dir: Path, resume: bool, d, progress: bool, extra_hooks: list[HookBase]) -> dict:
    ckpt = last_checkpoint(run_dir) if run_dir.is_dir() else None
    if resume:
        if ckpt is None:
            raise RvosError(f"{run_dir} holds no checkpoint to resume from")
        saved = read_config(run_dir)
        if cfg is not None and cfg != saved:
            raise ConfigError(f"--resume continues {run_dir} with its own config; drop --config and overrides")
        cfg = saved
    elif ckpt is not None or (run_dir / "metrics.jsonl").exists():
        raise RvosError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    if cfg is None:
        raise ConfigError("--config is required to start a run")
    tc = cfg.train
    if tc.batch_size % (tc.accumulation * d.world_size):
        raise ConfigError(f"train.batch_size {tc.batch_size} must be divisible by train.accumulation x processes "
                          f"({tc.accumulation} x {d.world_size})")
    if d.is_main:
        prepare_data(cfg, progress)
    distributed.barrier(d)
    root = Path(cfg.data.root)
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", {"rvos_version": rvos.__version__, "config": cfg.to_dict()}, indent=1)
        write_json(run_dir / "run.json", {
            "processes": d.world_size, "device": d.device.type, "machine": describe_machine(d.device),
            "accumulation": tc.accumulation,
            "clips_per_process_step": tc.batch_size // (tc.accumulation * d.world_size),
            "effective_batch_size": tc.batch_size, "lr": effective_lr(cfg.train),
            "lr_scaled": tc.scale_lr, "base_batch_size": tc.base_batch_size}, indent=1)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    random.seed(tc.seed)
    model = build_model(cfg.model).to(d.device)
    optimizer = build_optimizer(model, tc)
    clock = TrainingClock()
    scheduler = build_scheduler(optimizer, tc, clock)
    start_step = 0
    if tc.init and not resume:
        init = find_model(tc.init)
        load_weights(model, init, cfg, d.device)
        log.info("starting from the weights of %s", init)
    if resume:
        load_weights(model, ckpt, cfg, d.device)
        state = load_state(ckpt)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_step, clock.seconds = state["step"], state.get("train_seconds", 0.0)
        log.info("resuming %s from step %d", run_dir, start_step)
    if start_step >= tc.iterations:
        raise RvosError(f"{run_dir} already finished its {tc.iterations} iterations")
    if d.enabled:
        kwargs = {"device_ids": [d.device.index]} if d.device.type == "cuda" else {}
        wrapped = torch.nn.parallel.DistributedDataParallel(model, **kwargs)
    else:
        wrapped = model
    dc = cfg.data
    transform = ClipTransform(dc.short_side, dc.max_long_side, dc.flip_prob, dc.brightness, dc.contrast, dc.saturation)
    split = open_splits([root / name for name in dc.train_splits])
    model.prepare_training(split)
    if resume:
        model.load_training_state(state.get("model", {}))
    if dc.track_clips and not model.reads_track_clips:
        raise ConfigError(f"data.track_clips reads clips for a track grounding head's exact tracks, and this "
                          f"{cfg.model.name} model has none that reads them (model.track.enabled; conv-CLIP's not with "
                          "model.track.crop or without its temporal path): set data.track_clips=0")
    dataset = ClipDataset(split, dc.num_frames, dc.sampling, dc.frame_range, transform, seed=tc.seed,
                          expressions_per_clip=dc.expressions_per_clip, track_clips=dc.track_clips)
    sampler = StepBatches(tc.batch_size, tc.accumulation, d.rank, d.world_size, start_step,
                          num_steps=tc.iterations - start_step)
    # the loader's own generator: starting its iterator draws the workers' base seed, which from the global generator
    # would shift a resumed run's draws (point sampling in the losses) by one against the uninterrupted run's
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=dc.workers, collate_fn=collate,
                        pin_memory=d.device.type == "cuda", generator=torch.Generator().manual_seed(tc.seed))
    trainer = Trainer(wrapped, optimizer, scheduler, iter(loader), cfg, d, run_dir, start_step, clock)
    # after each step in this order: the step's log line is written before a checkpoint of the step exists (a run
    # killed in between resumes with its log complete); at the end, in reverse: the final checkpoint, then the
    # final evaluation, then the log closes
    hooks = [LogHook(tc.log_period, progress)]
    eval_hook = None
    if (root / dc.eval_split).is_dir():
        eval_hook = EvalHook(tc.eval_period, eval_fn(cfg, d.device, progress))
        hooks.append(eval_hook)
    hooks.append(CheckpointHook(tc.checkpoint_period))
    if tc.max_minutes > 0:
        hooks.append(TimeLimitHook(tc.max_minutes))
    trainer.register_hooks(hooks + extra_hooks)
    try:
        trainer.train()
    finally:
        # the loader's worker processes end here, not whenever the hooks' reference cycle is collected (maybe in
        # a process forked later, where the iterator may not touch them)
        trainer.batches = None
    summary = {"run_dir": str(run_dir), "steps": trainer.step + 1, "train_seconds": round(trainer.train_seconds, 1),
               "stopped": trainer.stop_reason or "finished", "checkpoint": str(last_checkpoint(run_dir))}
    if eval_hook is not None and eval_hook.results:
        summary["eval"] = eval_hook.results[max(eval_hook.results)]
    return summary
