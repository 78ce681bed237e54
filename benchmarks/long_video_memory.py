"""Peak memory of inference on long videos: 1000 frames against 100 frames (goal: at most 1.2x).

Each length runs in a fresh process that predicts one video with two sentences through the streaming
:class:`rvos.engine.inference.Predictor` (windows of ``infer.window`` frames) and reports its peak resident set
size; the frames are drawn on the fly (a moving square on noise), so the figure is the model's and the
predictor's memory, not a decoded video's.

    python benchmarks/long_video_memory.py [--config vlm_tiny_synth] [--height 96 --width 160]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(config: str, frames: int, height: int, width: int, window: int | None) -> None:
    import numpy as np
    import torch

    from rvos.config import load_config
    from rvos.engine.inference import Predictor, VideoSource
    from rvos.models.build import build_model

    # every query passes the threshold whatever the sentence, so every mask is computed and written
    cfg = load_config(config, [f"data.short_side={min(height, width)}", f"data.max_long_side={max(height, width)}",
                               "infer.score_threshold=0.0"])
    torch.manual_seed(0)
    model = build_model(cfg.model, load_pretrained=False)
    if getattr(model, "links_objects", False):  # slots that track the queries on an object
        model.even_objectness_prior()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def read(indices):
        out = []
        for t in indices:
            rng = np.random.default_rng(t)
            f = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            x = (t * 3) % (width - 20)
            f[20:40, x:x + 20] = (220, 40, 40)
            out.append(f)
        return np.stack(out)

    start = time.perf_counter()
    predictor = Predictor(model, cfg, window=window)
    written = 0
    for result in predictor.predict(VideoSource(frames, (height, width), read), ["the red square", "the object"]):
        written += int(result.masks.any())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": frames, "peak_rss_mib": peak / 1024, "model_rss_mib": base / 1024,
                      "seconds": time.perf_counter() - start, "window": predictor.window}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vlm_tiny_synth")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--window", type=int)
    parser.add_argument("--lengths", default="100,1000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "long_video_memory.json")
    args = parser.parse_args()
    if args.child:
        child(args.config, args.child, args.height, args.width, args.window)
        return
    from rvos.engine.machine import describe_machine  # here, as the children import what they measure themselves

    rows = []
    for frames in (int(x) for x in args.lengths.split(",")):
        cmd = [sys.executable, __file__, "--child", str(frames), "--config", args.config,
               "--height", str(args.height), "--width", str(args.width)]
        if args.window:
            cmd += ["--window", str(args.window)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    record = {
        "benchmark": "long_video_memory",
        "config": args.config,
        "frame_size": f"{args.height}x{args.width}",
        "machine": describe_machine(),
        "runs": rows,
        "peak_ratio_longest_vs_shortest": rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
