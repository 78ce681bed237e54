"""Seconds per training step of a config on its synthetic benchmark, where they go, and how many tensor operations a
step dispatches.

    python benchmarks/train_step.py                                    # vlm_tiny_synth on this CPU
    python benchmarks/train_step.py --set model.track.enabled=false --label "no track head"
    PYTHONPATH=/tmp/base/src python benchmarks/train_step.py --label base   # another checkout's code (git worktree)

``rvos train`` runs ``--steps`` steps (the data is generated into ``--work``/data when absent; no evaluation). The first
``--warmup`` are left out: vlm's track replay fills over the first steps, and a step reads more replayed examples until
it is full. With ``--state FILE`` the model's training state (the replay) after the warm-up is kept in FILE, and later
runs start from it with a short warm-up (``--warmup 5 --steps 45``), so that two versions of the code can be timed in
turn, several times. Of the others the median step is recorded, with the median of each part that ``Trainer.run_step``
times on a CPU: the data (waiting for the loader), the forward pass (with preparing the batch), the loss, the backward
pass and the optimizer (with gradient clipping). The last ``--count`` steps run under a dispatch mode that counts the
operations (every aten call, forward and backward); they are not timed. Operation counts do not depend on the machine,
so they show what a change of the code removed even where the timings are noisy (a shared VM's steps vary by 10 to 20%
from minute to minute: compare runs made one after the other). Appended to ``benchmarks/results/train_step.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import rvos
from rvos.config import load_config
from rvos.engine.machine import describe_machine
from rvos.engine.run import train
from rvos.engine.trainer import HookBase

PARTS = ("data", "forward", "loss", "backward", "optimizer")


class CountOperations(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class CountHook(HookBase):
    """Counts the operations of every step from ``first`` on."""

    def __init__(self, first: int):
        self.first, self.counts, self.mode = first, [], None

    def before_step(self) -> None:
        if self.trainer.step >= self.first:
            self.mode = CountOperations()
            self.mode.__enter__()

    def after_step(self) -> None:
        if self.mode is not None:
            self.mode.__exit__(None, None, None)
            self.counts.append(self.mode.count)
            self.mode = None


class TrainingStateHook(HookBase):
    """Loads the model's training state (vlm: its track replay) from ``path`` before the first step when the file
    exists; otherwise saves it there after step ``warmup``."""

    def __init__(self, path: Path, warmup: int):
        self.path, self.warmup, self.loaded = path, warmup, path.is_file()

    def before_train(self) -> None:
        if self.loaded:
            self.trainer.core.load_training_state(torch.load(self.path, weights_only=False))

    def after_step(self) -> None:
        if not self.loaded and self.trainer.step + 1 == self.warmup:
            torch.save(self.trainer.core.training_state(), self.path)


def source_commit() -> str:
    """The commit of the rvos source this process imported, with ``+changes`` when its tree differs from it."""
    src = Path(rvos.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vlm_tiny_synth")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides (the flag may be repeated: every occurrence counts)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=140)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--state", type=Path, help="the model's training state after the warm-up: saved there, or "
                        "loaded from there when the file exists (then a few warm-up steps do)")
    parser.add_argument("--label", default="", help="what this measurement is, in the results file")
    parser.add_argument("--work", type=Path, default=Path("runs/train_step"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_step.json")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps - args.count:
        parser.error("--warmup must leave steps to time before the --count last ones")

    args.work.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=args.work))
    shutil.rmtree(run_dir)  # train() makes it, and refuses a folder holding a run
    overrides = [f"data.root={args.work / 'data'}", "data.eval_split=none", f"train.iterations={args.steps}",
                 "train.max_minutes=0", "train.log_period=1", "train.checkpoint_period=0", *args.set]
    cfg = load_config(args.config, overrides)
    counter = CountHook(args.steps - args.count)
    # code from before train() took hooks (another checkout's) is timed without counting
    extra = [counter] + ([TrainingStateHook(args.state, args.warmup)] if args.state else [])
    hooks = {"hooks": extra} if "hooks" in inspect.signature(train).parameters else {}
    if args.state and not hooks:
        parser.error("--state needs code whose train() takes hooks")
    try:
        train(cfg, run_dir, device="cpu", progress=False, **hooks)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    timed = [r for r in records if args.warmup < r["step"] <= args.steps - args.count]
    result = {
        "config": args.config, "overrides": args.set, "label": args.label, "machine": describe_machine(),
        "threads": torch.get_num_threads(), "rvos_commit": source_commit(),
        "steps": args.steps, "timed_steps": len(timed),
        "step_seconds": round(statistics.median(r["step_seconds"] for r in timed), 4),
        "parts_seconds": {p: round(statistics.median(r[f"{p}_seconds"] for r in timed), 4) for p in PARTS
                          if f"{p}_seconds" in timed[0]},  # code older than these parts times the data only
        "operations_per_step": round(statistics.mean(counter.counts)) if counter.counts else None,
    }
    print(json.dumps(result, indent=1))
    existing = json.loads(args.out.read_text()) if args.out.is_file() else []
    args.out.write_text(json.dumps(existing + [result], indent=1) + "\n")


if __name__ == "__main__":
    main()
