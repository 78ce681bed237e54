"""The training loop: small, with everything else in hooks (as detectron2's ``TrainerBase``).

``Trainer.train`` runs ``before_train``, then per step ``before_step`` / ``run_step`` / ``after_step``, then
``after_train`` on every hook (in reverse order, as nested set-ups are torn down: a hook can rely on the hooks
before it while it finishes, e.g. the final evaluation writes through the log hook). ``run_step`` takes the step's micro-batches (gradient accumulation), runs the
model and its loss, checks the loss is finite on every process, clips the gradient and steps the optimizer
and the schedule. Checkpoints, logs, evaluation and time limits are hooks (:mod:`rvos.engine.hooks`); a method
plugs in through the model contract (:mod:`rvos.models.meta.base`: ``prepare_text``, ``forward`` and ``loss`` on
a :class:`~rvos.models.meta.base.ClipBatch`), never a branch here.
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from torch import nn

from rvos.config import Config
from rvos.engine.distributed import Dist, all_reduce_max, all_reduce_mean, broadcast_flag
from rvos.engine.optim import TrainingClock
from rvos.errors import RvosError
from rvos.models.meta.base import ClipBatch, TrackClips


class NonFiniteLoss(RvosError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


class HookBase:
    trainer: "Trainer"

    def before_train(self) -> None: ...

    def after_train(self) -> None: ...

    def before_step(self) -> None: ...

    def after_step(self) -> None: ...


class Trainer:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batches, cfg: Config,
                 dist: Dist, run_dir: Path, start_step: int = 0, clock: TrainingClock | None = None):
        self.model = model  # maybe wrapped in DistributedDataParallel
        self.core = getattr(model, "module", model)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.batches = batches  # iterator of micro-batches, in step order
        self.cfg, self.dist, self.run_dir = cfg, dist, run_dir
        self.start_step = self.step = start_step
        self.max_iter = cfg.train.iterations
        self.hooks: list[HookBase] = []
        self.scalars: dict[str, float] = {}  # the last step's loss parts, lr, timings (for the hooks)
        self.stop_reason: str | None = None  # set by a hook to end training after the current step
        self.clock = clock if clock is not None else TrainingClock()  # the schedule's, with train.time_schedule
        self.failed = False  # training raised: hooks must not save its state as a good checkpoint

    @property
    def train_seconds(self) -> float:
        """Seconds spent in training steps (the same on every process)."""
        return self.clock.seconds

    def register_hooks(self, hooks: list[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
        self.hooks.extend(hooks)

    def train(self) -> None:
        for h in self.hooks:
            h.before_train()
        try:
            for self.step in range(self.start_step, self.max_iter):
                for h in self.hooks:
                    h.before_step()
                self.run_step()
                for h in self.hooks:
                    h.after_step()
                if self.stop_reason:
                    break
            else:
                self.step = self.max_iter - 1
        except BaseException:
            self.failed = True
            raise
        finally:
            for h in reversed(self.hooks):
                h.after_train()

    def _autocast(self):
        if self.dist.device.type == "cuda" and self.cfg.train.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def clip_batch(self, collated: dict) -> ClipBatch:
        """The model's batch from the loader's: frames in [0, 1] and the sentences prepared by the model, on the
        device."""
        device = self.dist.device
        frames = collated["frames"].to(device, non_blocking=True).float().div_(255)
        extra = collated.get("track_clips")
        if extra is not None:
            extra = TrackClips(extra["frames"].to(device, non_blocking=True).float().div_(255), extra["instances"],
                               extra["instance_ids"], extra["videos"], extra["flipped"])
        batch = ClipBatch(frames, self.core.prepare_text(collated["texts"]), collated["texts"], collated["instances"],
                          collated["referred"], collated["videos"], collated["expressions"], self.step,
                          collated["instance_ids"], collated["flipped"], extra)
        return batch.to(device)

    def run_step(self) -> None:
        start = time.perf_counter()
        tc = self.cfg.train
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        parts = dict.fromkeys(("data", "forward", "loss", "backward", "optimizer"), 0.0)  # seconds
        for micro in range(tc.accumulation):
            t0 = time.perf_counter()
            batch = next(self.batches)
            t1 = time.perf_counter()
            clip = self.clip_batch(batch)
            last = micro == tc.accumulation - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                with self._autocast():
                    outputs = self.model(clip)
                    t2 = time.perf_counter()
                    losses = self.core.loss(outputs, clip)
                    t3 = time.perf_counter()
                loss = sum(losses.values())
                (loss / tc.accumulation).backward()
            for part, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3)):
                parts[part] += seconds
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v.detach().float() / tc.accumulation
        total = sum(totals.values())
        if broadcast_flag(not math.isfinite(float(total)), self.dist):
            raise NonFiniteLoss(
                f"the loss became {float(total)} at step {self.step} (parts: "
                + ", ".join(f"{k}={float(v):.3g}" for k, v in totals.items() if not math.isfinite(float(v)))
                + "); training stopped and the last good checkpoint is kept. Lower train.lr or raise "
                "train.warmup_iters, then resume with --resume"
            )
        grad_norm = None
        t0 = time.perf_counter()
        if tc.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, tc.grad_clip))
        self.optimizer.step()
        parts["optimizer"] = time.perf_counter() - t0
        reduced = {k: float(all_reduce_mean(v, self.dist)) for k, v in totals.items()}
        self.scalars = {"loss": sum(reduced.values()), **{f"loss/{k}": v for k, v in reduced.items()},
                        "lr": self.optimizer.param_groups[0]["lr"], "data_seconds": parts["data"]}
        if self.dist.device.type == "cpu":  # where a step's time goes (on a GPU these would time kernel launches)
            self.scalars |= {f"{k}_seconds": v for k, v in parts.items() if k != "data"}
        if grad_norm is not None:
            self.scalars["grad_norm"] = grad_norm
        # the slowest process's time: the time limit stops every process at the same step, and a time schedule gives
        # them the same learning rate
        elapsed = all_reduce_max(time.perf_counter() - start, self.dist)
        self.clock.seconds += elapsed
        self.scheduler.step()  # after the clock: with train.time_schedule the next step's rate reads this step's time
        self.scalars["step_seconds"] = elapsed
