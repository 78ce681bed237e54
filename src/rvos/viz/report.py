"""Pictures of a run: the training curve, and predictions next to their ground truth as GIF and MP4."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rvos.data.frames import read_label_png
from rvos.viz.overlay import side_by_side, spotlight
from rvos.viz.video_io import write_video


def training_curve(metrics_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Loss over steps (and eval J&F where the run evaluated) from a run's metrics.jsonl, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records if "loss" in r]
    loss = [r["loss"] for r in records if "loss" in r]
    evals = [(r["step"], r["eval/J&F"]) for r in records if "eval/J&F" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, loss, color="tab:blue", linewidth=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    ax.grid(alpha=0.3)
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals), "o-", color="tab:red", label="J&F (eval split)")
        ax2.set_ylabel("J&F", color="tab:red")
        ax2.set_ylim(0, 1)
    ax.set_title("training curve")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def comparison_frames(split, video: str, exp_id: str, pred_dir: str | os.PathLike, scale: int = 2) -> list[np.ndarray]:
    """Frames of one expression: its prediction (left) next to the ground truth (right), the sentence on top; each
    mask shown as a spotlight (the rest of the frame dimmed, the mask outlined), which no object colour hides."""
    v = split.video(video)
    text = v.expressions[exp_id].text
    frames = split.read_frames(video)
    truth = split.target_masks(video, exp_id)
    out = []
    for t, frame in enumerate(frames):
        pred = read_label_png(Path(pred_dir) / video / exp_id / f"{v.frames[t]}.png") != 0
        if scale > 1:
            frame = np.repeat(np.repeat(frame, scale, 0), scale, 1)
            pred = np.repeat(np.repeat(pred, scale, 0), scale, 1)
            gt = np.repeat(np.repeat(truth[t], scale, 0), scale, 1)
        else:
            gt = truth[t]
        left = spotlight(frame, pred, text, title="prediction")
        right = spotlight(frame, gt, text, title="ground truth")
        out.append(side_by_side(left, right))
    return out


def write_examples(split, pred_dir: str | os.PathLike, examples: list[tuple[str, str]], out_dir: str | os.PathLike,
                   fps: float = 6.0) -> list[dict]:
    """GIF and MP4 of each (video, exp_id); returns their paths and sentences."""
    out_dir = Path(out_dir)
    written = []
    for video, exp_id in examples:
        frames = comparison_frames(split, video, exp_id, pred_dir)
        stem = f"{video}_{exp_id}"
        write_video(out_dir / f"{stem}.gif", frames, fps)
        write_video(out_dir / f"{stem}.mp4", frames, fps)
        exp = split.video(video).expressions[exp_id]
        written.append({"video": video, "exp_id": exp_id, "text": exp.text, "kind": exp.kind,
                        "gif": f"{out_dir.name}/{stem}.gif", "mp4": f"{out_dir.name}/{stem}.mp4"})
    return written
