"""Training hooks: checkpoints, logs (progress bar, TensorBoard, metrics.jsonl), periodic evaluation, a time
limit."""

from __future__ import annotations

import json
import logging
import time

from tqdm import tqdm

from rvos.engine.checkpoint import rng_state, save_checkpoint
from rvos.engine.distributed import barrier
from rvos.engine.trainer import HookBase
from rvos.fileio import write_text

log = logging.getLogger(__name__)


class PeriodicHook(HookBase):
    """Runs :meth:`run` every ``period`` steps (0: never) and once more at the end of training, unless training
    failed, took no step, or the last step already ran it."""

    def __init__(self, period: int):
        self.period = period
        self.last_step = -1  # the number of completed steps when run() last ran

    def run(self) -> None:
        raise NotImplementedError

    def after_step(self) -> None:
        if self.period and (self.trainer.step + 1) % self.period == 0:
            self.run()
            self.last_step = self.trainer.step + 1

    def after_train(self) -> None:
        t = self.trainer
        if not t.failed and t.step + 1 > t.start_step and self.last_step != t.step + 1:
            self.run()
            self.last_step = t.step + 1


class CheckpointHook(PeriodicHook):
    """Save every ``period`` steps and at the end (not after a failure: the last good checkpoint stays)."""

    def run(self) -> None:
        t = self.trainer
        done = t.step + 1  # steps completed
        if t.dist.is_main:
            state = {"step": done, "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
                     "rng": rng_state(), "train_seconds": t.train_seconds, "model": t.core.training_state()}
            path = save_checkpoint(t.run_dir, done, t.core, t.cfg, state)
            log.info("saved %s", path)
        barrier(t.dist)


class LogHook(HookBase):
    """A progress bar with loss and speed; every ``period`` steps a line in ``metrics.jsonl`` and TensorBoard
    scalars (main process only)."""

    def __init__(self, period: int, progress: bool = True):
        self.period = period
        self.progress = progress
        self.bar = None
        self.writer = None

    def before_train(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        path = t.run_dir / "metrics.jsonl"
        if path.is_file():  # a resumed run: drop what the interrupted run logged after its checkpoint
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= t.start_step]
            write_text(path, "".join(line + "\n" for line in kept))
        self.metrics = open(path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(t.run_dir / "tensorboard"), purge_step=t.start_step)
        except ImportError:  # tensorboard is a dependency, but a run should not die for want of it
            log.warning("tensorboard is not installed: no TensorBoard logs")
        self.bar = tqdm(total=t.max_iter, initial=t.start_step, desc="train", unit="step", disable=not self.progress,
                        dynamic_ncols=True)

    def write(self, record: dict) -> None:
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(k, v, record["step"])

    def after_step(self) -> None:
        t = self.trainer
        if not t.dist.is_main:
            return
        s = t.scalars
        self.bar.set_postfix(loss=f"{s['loss']:.3f}", lr=f"{s['lr']:.2e}", refresh=False)
        self.bar.update()
        step = t.step + 1
        if step % self.period == 0 or step == t.start_step + 1:
            self.write({"step": step, "time": round(t.train_seconds, 3), **{k: round(v, 6) for k, v in s.items()}})

    def after_train(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.metrics.close()
        if self.writer is not None:
            self.writer.close()


class TimeLimitHook(HookBase):
    """End training once the time spent in training steps passes ``minutes``."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60

    def after_step(self) -> None:
        t = self.trainer
        if t.train_seconds >= self.seconds:
            t.stop_reason = f"time limit of {self.seconds / 60:g} minutes reached at step {t.step + 1}"
            log.info(t.stop_reason)


class EvalHook(PeriodicHook):
    """Every ``period`` steps and at the end: predict the eval split with the model in training and score it
    (``RUN_DIR/eval/step_N/scores.json``, and J&F in metrics.jsonl)."""

    def __init__(self, period: int, evaluate_fn):
        super().__init__(period)
        self.evaluate_fn = evaluate_fn  # (model, out_dir) -> EvalResult
        self.results: dict[int, dict] = {}

    def run(self) -> None:
        t = self.trainer
        step = t.step + 1
        if t.dist.is_main:
            start = time.perf_counter()
            result = self.evaluate_fn(t.core, t.run_dir / "eval" / f"step_{step:07d}")
            record = {"step": step, "eval/J&F": result.JF, "eval/J": result.J, "eval/F": result.F,
                      "eval_seconds": round(time.perf_counter() - start, 2)}
            for kind, scores in result.by_kind.items():
                record[f"eval/{kind}/J&F"] = scores["J&F"]
            self.results[step] = result.to_json()
            for h in t.hooks:
                if isinstance(h, LogHook) and h.bar is not None:
                    h.write(record)
            log.info("step %d: J&F %.4f on %s", step, result.JF, t.cfg.data.eval_split)
        barrier(t.dist)
