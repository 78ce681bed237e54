"""``rvos demo``: the whole pipeline on a fresh machine with no downloads.

Generates the synthetic motion benchmark, trains the tiny conv-CLIP model on it (progress bar), predicts and
scores the annotated validation split, and writes a report: the J&F table by expression kind, the training
curve, and a prediction next to its ground truth (GIF and MP4) for each kind of expression.
"""

from __future__ import annotations

import html
import logging
import os
from pathlib import Path

from rvos.config import load_config
from rvos.data.splits import open_split
from rvos.engine.checkpoint import find_model, last_checkpoint, load_model
from rvos.engine.run import evaluate_model, prepare_data, train
from rvos.errors import RvosError
from rvos.eval.evaluate import expression_key
from rvos.fileio import write_text
from rvos.viz.report import training_curve, write_examples

log = logging.getLogger(__name__)


def pick_examples(split, per_expression: dict[str, list[float]], min_visible: float = 0.75) -> list[tuple[str, str]]:
    """One expression per kind: among those whose target is visible in at least ``min_visible`` of the frames
    (so there is something to see), the one with the median J&F of its kind (a fair sample, not the best)."""
    by_kind: dict[str, list[tuple[float, str, str]]] = {}
    for video in split.videos.values():
        for exp_id, exp in video.expressions.items():
            target = split.target_masks(video.name, exp_id)
            if target.reshape(len(target), -1).any(1).mean() < min_visible:
                continue
            j, f = per_expression[expression_key(video.name, exp_id)]
            by_kind.setdefault(exp.kind or "all", []).append(((j + f) / 2, video.name, exp_id))
    picks = []
    for kind in sorted(by_kind):
        scored = sorted(by_kind[kind])
        _, video, exp_id = scored[len(scored) // 2]
        picks.append((video, exp_id))
    return picks


def _table(result) -> list[str]:
    rows = ["| expressions | count | J&F | J | F |", "|---|---:|---:|---:|---:|"]
    rows.append(f"| all | {len(result.per_expression)} | {result.JF:.3f} | {result.J:.3f} | {result.F:.3f} |")
    for kind, s in result.by_kind.items():
        rows.append(f"| {kind} | {s['count']} | {s['J&F']:.3f} | {s['J']:.3f} | {s['F']:.3f} |")
    return rows


def run_demo(out: str | os.PathLike = "demo", run: str | os.PathLike | None = None, minutes: float = 7.0,
             device: str | None = None, progress: bool = True, overrides: list[str] = ()) -> dict:
    """``overrides`` adjust the tiny config (the tests use a smaller benchmark)."""
    out = Path(out)
    if minutes <= 0:
        raise RvosError(f"--minutes must be positive, got {minutes:g}")
    if run is None:
        run_dir = out / "run"
        # the config's cosine schedule is sized to end with its time budget on a 2-core CPU; the demo's budget scales
        # it (a slower machine stops at the budget, a faster one finishes early)
        tiny = load_config("vlm_tiny_synth").train
        iterations = max(1, round(tiny.iterations * minutes / tiny.max_minutes))
        cfg = load_config("vlm_tiny_synth", [f"data.root={out / 'data'}", f"train.max_minutes={minutes}",
                                             f"train.iterations={iterations}",
                                             "data.eval_split=none", *overrides])
        if last_checkpoint(run_dir) is None:
            train(cfg, run_dir, device=device, progress=progress)  # generates the benchmark first
        else:
            log.info("reusing the trained run in %s", run_dir)
    else:
        run_dir = Path(run)
    model, cfg = load_model(find_model(run_dir), device=device or "cpu")
    data_root = Path(cfg.data.root) if run is not None else out / "data"
    if run is None or cfg.data.synth is not None:
        cfg.data.root = str(data_root)
        prepare_data(cfg, progress)
    split_dir = data_root / "valid_u"
    if not split_dir.is_dir():
        raise RvosError(f"{split_dir} does not exist: the demo evaluates on the synthetic benchmark's valid_u split")
    result = evaluate_model(model, cfg, device or "cpu", split_dir, out / "eval", progress)
    pred_dir = out / "eval" / "pred"
    report = out / "report"
    curve = training_curve(run_dir / "metrics.jsonl", report / "training_curve.png")
    split = open_split(split_dir)
    examples = write_examples(split, pred_dir, pick_examples(split, result.per_expression), report / "examples")
    lines = ["# rvos demo", "", f"Model: `{find_model(run_dir)}` (tiny conv-CLIP, trained on the synthetic benchmark).",
             "", f"Scores on `{split_dir}`:", "", *_table(result), "", "![training curve](training_curve.png)", "",
             "## Predictions (left) next to the ground truth (right)", ""]
    for ex in examples:
        lines += [f"**{ex['kind']}**: \"{ex['text']}\" ([MP4]({ex['mp4']}))", "", f"![{ex['text']}]({ex['gif']})", ""]
    write_text(report / "report.md", "\n".join(lines) + "\n")
    cards = "\n".join(f"<figure><img src='{ex['gif']}'><figcaption><b>{html.escape(ex['kind'] or '')}</b>: "
                      f"{html.escape(ex['text'])} (<a href='{ex['mp4']}'>MP4</a>)</figcaption></figure>"
                      for ex in examples)
    table = "".join(f"<tr><td>{k}</td><td>{s['count']}</td><td>{s['J&F']:.3f}</td><td>{s['J']:.3f}</td>"
                    f"<td>{s['F']:.3f}</td></tr>" for k, s in result.by_kind.items())
    write_text(report / "index.html", f"""<!doctype html><meta charset="utf-8"><title>rvos demo</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}td,th{{padding:2px 10px;text-align:right}}
figure{{display:inline-block;margin:8px}}img{{max-width:100%}}</style>
<h1>rvos demo</h1><table><tr><th>expressions</th><th>count</th><th>J&amp;F</th><th>J</th><th>F</th></tr>
<tr><td>all</td><td>{len(result.per_expression)}</td><td>{result.JF:.3f}</td><td>{result.J:.3f}</td><td>{result.F:.3f}</td></tr>
{table}</table><p><img src="{curve.name}"></p><h2>Predictions (left) and ground truth (right)</h2>{cards}
""")
    return {"scores": result.to_json(), "report": str(report / "report.md"), "html": str(report / "index.html"),
            "run": str(run_dir), "examples": examples}
