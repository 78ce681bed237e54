"""Forward speed of a model config (random weights): seconds per frame on a CPU, frames per second and peak
memory on a GPU.

    python benchmarks/model_speed.py --config vlm_convnext_l_mevis                     # this CPU, float32
    python benchmarks/model_speed.py --config vlm_convnext_l_mevis --device cuda --dtype bfloat16

One clip of ``--frames`` frames at ``--height`` x ``--width`` (default 8 x 360 x 640, the paper's setting) with one
sentence goes through the whole model (``forward`` and ``postprocess``: CLIP image and text, cross-modal encoder, frame decoder,
video decoder and the selection rule); the stages are timed separately as well. The result is appended to
``benchmarks/results/model_speed.json`` under a key naming the config, device and dtype.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from rvos.config import load_config
from rvos.engine.machine import describe_machine
from rvos.models.build import build_model
from rvos.models.meta.base import ClipBatch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vlm_convnext_l_mevis")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "model_speed.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = load_config(args.config)
    model = build_model(cfg.model, load_pretrained=False).to(device).eval()
    frames = torch.rand(1, args.frames, 3, args.height, args.width, device=device)
    sentence = "the giraffe that turns around and walks away"
    batch = ClipBatch(frames, model.prepare_text([sentence]).to(device), [sentence], [], [], ["clip"], ["0"])
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    stages: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            sync(device)
            start = time.perf_counter()
            out = fn(*a, **k)
            sync(device)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
            return out
        return wrapper

    model.backbone.forward_image = timed("clip_image", model.backbone.forward_image)
    model.encoder.forward = timed("cross_modal_encoder", model.encoder.forward)
    model.frame_decoder.forward = timed("frame_decoder", model.frame_decoder.forward)
    model.decode_video = timed("video_init_and_decoder", model.decode_video)

    with torch.inference_mode(), autocast:
        model.postprocess(model(batch))  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        best, best_stages = float("inf"), {}
        for _ in range(args.repeat):
            stages.clear()
            sync(device)
            start = time.perf_counter()
            model.postprocess(model(batch))
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed < best:
                best, best_stages = elapsed, dict(stages)
    record = {
        "config": args.config,
        "machine": describe_machine(device),
        "dtype": args.dtype,
        "clip": f"{args.frames} frames at {args.height}x{args.width}",
        "seconds_per_clip": round(best, 4),
        "seconds_per_frame": round(best / args.frames, 4),
        "frames_per_second": round(args.frames / best, 2),
        "stage_seconds_per_clip": {k: round(v, 4) for k, v in best_stages.items()},
    }
    if device.type == "cuda":
        record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results[f"{args.config} / {device.type} / {args.dtype}"] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
