"""``rvos <command>``: parses arguments, calls library functions, prints results.

Errors a user can cause (:class:`rvos.errors.RvosError`) are printed as one message and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from rvos.data.synth.spec import SynthSpec
from rvos.errors import CheckpointError, ConfigError, DataError, RvosError
from rvos.refine.config import SAM_HQ_VIT_L


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``with`` block unwinds: atomic writes remove their
    ``.partial`` folders and temporary files, as on Ctrl+C."""


def _raise_terminated(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # a forked worker (evaluation pool, data loader): just end, as by default
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


_MAIN_PID = os.getpid()


def _model_path(path: Path, flag: str) -> Path:
    """A run folder, a model folder, or the model.safetensors inside one; anything else is a clear error now,
    instead of "config.json does not exist" after a while."""
    if path.is_file() and path.name != "model.safetensors":
        raise CheckpointError(f"{flag} {path}: this is a file, not a model. Give a run folder (its last checkpoint "
                              "is used), a model folder (model.safetensors + config.json), or the model.safetensors "
                              "inside one")
    return path


def _check_output(out: Path, overwrite: bool, existing_ok: bool = False) -> None:
    """Fail before the model is loaded when ``out`` cannot be written."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file: --out takes a folder")
    if not existing_ok and out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out} already exists and is not empty: choose another --out or pass --overwrite")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"cannot write into {parent} (permission denied): choose another --out")


def _print_eval(scores: dict) -> None:
    """J, F and J&F, overall and by kind, from an evaluation's JSON form (``EvalResult.to_json()``)."""
    out = sys.stdout
    release = f", {scores['release']}" if scores.get("release") else ""
    print(f"J&F {scores['J&F']:.4f}   J {scores['J']:.4f}   F {scores['F']:.4f}   "
          f"({scores['num_expressions']} expressions{release})", file=out)
    if scores.get("N-acc") is not None:
        accuracies = "   ".join(f"{k} {scores[k]:.4f}" for k in ("N-acc", "T-acc", "Final") if scores[k] is not None)
        print(f"{accuracies}   ({scores['no_target_note']})", file=out)
        for group, s in scores["by_target"].items():
            print(f"{group:<16}{s['count']:>6}{s['J&F']:>8.4f}{s['J']:>8.4f}{s['F']:>8.4f}", file=out)
    if scores["by_kind"]:
        print(f"{'kind':<16}{'count':>6}{'J&F':>8}{'J':>8}{'F':>8}", file=out)
        for kind, s in scores["by_kind"].items():
            print(f"{kind:<16}{s['count']:>6}{s['J&F']:>8.4f}{s['J']:>8.4f}{s['F']:>8.4f}", file=out)
    if scores["missing"] or scores["wrong_size"]:
        print(f"scored 0: {len(scores['missing'])} missing and {len(scores['wrong_size'])} unreadable or wrong-size "
              "predictions (listed in the JSON)", file=out)


# ----------------------------------------------------------------------------------------------- commands


def cmd_synth(args) -> None:
    from rvos.data.synth.generate import write_benchmark

    spec = SynthSpec(train=args.train, valid_u=args.valid_u, valid=args.valid, seed=args.seed, frames=args.frames,
                     height=args.height, width=args.width)
    out = write_benchmark(args.out, spec, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {spec.train} train, {spec.valid_u} valid_u and {spec.valid} valid videos to {out}")


def _report_problems(args, exc) -> None:
    """With --json, a failed check writes every missing or wrong file there (the message only summarises them),
    and no scores, so that an earlier run's scores are never read as this one's."""
    from rvos.fileio import write_json

    if args.json:
        write_json(args.json, exc.to_json(), indent=1)


def _print_davis(scores: dict) -> None:
    """The official DAVIS 2017 table, then J and F per object, from ``DavisResult.to_json()``."""
    from rvos.eval.davis import MEASURES

    print(f"DAVIS-2017 {scores['task']} ({scores['num_objects']} objects)")
    print("".join(f"{m:>10}" for m in MEASURES))
    print("".join(f"{scores[m]:>10.3f}" for m in MEASURES))
    print(f"{'object':<24}{'J-Mean':>8}{'F-Mean':>8}")
    for name, s in scores["per_object"].items():
        print(f"{name:<24}{s['J-Mean']:>8.3f}{s['F-Mean']:>8.3f}")


def cmd_eval(args) -> None:
    from rvos.eval.evaluate import evaluate
    from rvos.eval.problems import IncompletePredictions
    from rvos.fileio import write_json

    from rvos.eval.coco_refer import evaluate_coco_refer, is_coco_refer

    if is_coco_refer(args.gt, args.pred):  # A2D / JHMDB-Sentences: COCO-format ground truth and predictions
        scores = evaluate_coco_refer(args.gt, args.pred, predictions=args.map_predictions)
        if args.json:
            write_json(args.json, scores, indent=1)
        for key, value in scores.items():
            print(f"{key:<16}{value:.4f}" if isinstance(value, float) else f"{key:<16}{value}")
        return
    if args.task:  # the DAVIS 2017 benchmark: GT is a DAVIS folder, PRED a results folder
        from rvos.eval.davis import evaluate_davis

        scores = evaluate_davis(args.gt, args.pred, args.task, subset=args.set).to_json()
        if args.json:
            write_json(args.json, scores, indent=1)
        _print_davis(scores)
        return
    try:
        result = evaluate(args.gt, args.pred, workers=args.workers, allow_missing=args.allow_missing,
                          progress=not args.quiet)
    except IncompletePredictions as exc:
        _report_problems(args, exc)
        raise
    if args.json:
        write_json(args.json, result.to_json(), indent=1)
    _print_eval(result.to_json())


def cmd_export_masks(args) -> None:
    from rvos.eval.export import export_masks

    n = export_masks(args.gt, args.out, progress=not args.quiet)
    print(f"wrote {n} mask PNGs to {args.out}")


def cmd_export_coco(args) -> None:
    from rvos.errors import DataError
    from rvos.fileio import write_json

    if args.out.exists() and not args.overwrite:
        raise DataError(f"{args.out} already exists: choose another --out or pass --overwrite")
    if args.dataset == "a2d-sentences":
        from rvos.data.a2d import a2d_coco_ground_truth

        if args.samples or args.every_frame:
            raise DataError("--samples and --every-frame are JHMDB-Sentences options; A2D-Sentences evaluates every "
                            "annotated frame")
        gt = a2d_coco_ground_truth(args.root, args.subset)
        what = f"annotated frames x sentences of the {args.subset} subset"
    else:
        from rvos.data.jhmdb import jhmdb_coco_ground_truth

        if args.samples and args.every_frame:
            raise DataError("give --samples or --every-frame, not both")
        gt = jhmdb_coco_ground_truth(args.root, args.samples, args.every_frame)
        what = "every frame with a mask (not the published draw)" if args.every_frame else "the published 3-frame draw"
    write_json(args.out, gt)
    print(f"wrote {args.out}: {len(gt['images'])} images ({what})")


def cmd_submit(args) -> None:
    from rvos.eval.problems import IncompletePredictions
    from rvos.eval.submit import write_submission
    from rvos.fileio import write_json

    try:
        n = write_submission(args.split_dir, args.pred, args.out, progress=not args.quiet)
    except IncompletePredictions as exc:
        _report_problems(args, exc)
        raise
    if args.json:
        write_json(args.json, {"zip": str(args.out), "pngs": n, "missing": [], "wrong_size": []}, indent=1)
    print(f"wrote {args.out} ({n} PNGs)")


def cmd_info(args) -> None:
    from rvos.config import load_config
    from rvos.models.build import build_model, weight_sources
    from rvos.models.meta.base import describe_model

    cfg = load_config(args.config, args.overrides)
    model = build_model(cfg.model, load_pretrained=False)  # the architecture; weights do not matter here
    info = {"method": cfg.model.name, **describe_model(model)}
    info["pretrained_weights"] = {key: f"{value} (not loaded)" for key, value in weight_sources(cfg.model).items()}
    if args.json:
        print(json.dumps(info, indent=1))
        return
    print(f"{cfg.model.name} model from {args.config} (random weights: the architecture only)")
    print(f"{'part':<26}{'parameters':>14}{'trainable':>14}{'frozen':>14}  details")
    for part, d in info.items():
        if not isinstance(d, dict):
            continue
        details = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("parameters", "trainable", "frozen"))
        if "parameters" in d:
            print(f"{part:<26}{d['parameters']:>14,}{d['trainable']:>14,}{d['frozen']:>14,}  {details}")
        else:
            print(f"{part:<26}{'':>42}  {details}")


def cmd_convert(args) -> None:
    from rvos.config import load_config
    from rvos.engine.checkpoint import MODEL_FILE, save_model
    from rvos.models.convert import checkpoint_config, official_model
    from rvos.models.convert.rules import read_checkpoint

    if (args.out / MODEL_FILE).exists():
        raise RvosError(f"{args.out / MODEL_FILE} already exists: choose another --out or remove it")
    state = read_checkpoint(args.checkpoint, args.trust_pickle)
    if args.config:
        cfg = load_config(args.config, args.overrides)
    else:  # the config of the release the checkpoint is (its backbone says which)
        name, implied = checkpoint_config(args.method, state)
        cfg = load_config(name, implied + list(args.overrides or []))
    model = official_model(args.method, state, cfg, source=str(args.checkpoint))
    save_model(args.out, model, cfg)
    print(f"wrote {args.out} (rvos predict --weights {args.out} ...)")


def cmd_train(args) -> None:
    from rvos.config import load_config
    from rvos.engine.run import train

    cfg = load_config(args.config, args.overrides) if args.config else None
    if cfg is None and args.overrides:
        raise ConfigError("overrides need --config")
    summary = train(cfg, args.out, resume=args.resume, device=args.device, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {summary['steps']} steps in {summary['train_seconds']:.0f} s ({summary['stopped']}); "
              f"checkpoint: {summary['checkpoint']}")
        if "eval" in summary:
            print("eval:")
            _print_eval(summary["eval"])


def _refine_config(args, cfg):
    """The config's ``infer.refine``, turned on by ``--refine`` or ``--sam`` (which also names the weights)."""
    import dataclasses

    from rvos.refine import RefineConfig

    refine = cfg.infer.refine
    sam = getattr(args, "sam", None)
    if getattr(args, "refine", False) or sam:
        refine = refine or RefineConfig()
        if sam:
            refine = dataclasses.replace(refine, sam=sam)
    return refine


def _predictor(args):
    """The Predictor of ``--run`` or ``--weights`` with ``--device``, ``--window`` and ``--threshold``, and SAM-HQ
    refinement when the model's config (``infer.refine``), ``--refine`` or ``--sam`` asks for it."""
    import dataclasses

    from rvos.engine.checkpoint import find_model, load_model
    from rvos.engine.inference import Predictor
    from rvos.refine.sam_hq import build_refiner

    model_path = _model_path(args.run, "--run") if args.run else _model_path(args.weights, "--weights")
    model, cfg = load_model(find_model(model_path), device=args.device or "cpu")
    if getattr(args, "instances", None):  # rvos infer --instances: MUTR's instance queries
        try:
            infer = dataclasses.replace(cfg.infer, instances=str(args.instances),
                                        instance_videos=str(args.instance_videos) if args.instance_videos else None)
        except ValueError as exc:
            raise ConfigError(f"--instances: {exc}") from None
        cfg = dataclasses.replace(cfg, infer=infer)
    refiner = build_refiner(_refine_config(args, cfg), args.device or "cpu")
    return Predictor(model, cfg, args.device or "cpu", window=args.window, score_threshold=args.threshold,
                     refiner=refiner)


def cmd_infer(args) -> None:
    from rvos.engine.predict_split import predict_split
    from rvos.data.splits import open_split

    open_split(args.split_dir)  # a bad split or output fails before the model is loaded
    _check_output(args.out, args.overwrite, existing_ok=True)
    n = predict_split(_predictor(args), args.split_dir, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print(f"predicted {n} videos into {args.out}")


def cmd_refine(args) -> None:
    from rvos.data.splits import open_split
    from rvos.refine import RefineConfig
    from rvos.refine.predictions import check_output, refine_predictions, scan_predictions
    from rvos.refine.sam_hq import SamHQRefiner

    cfg = RefineConfig(sam=args.sam, device=args.device, dtype=args.dtype, batch_size=args.batch_size, seed=args.seed,
                       positive_points=args.positive_points, negative_points=args.negative_points,
                       hq_token_only=args.hq_token_only)
    check_output(args.pred, args.out, args.overwrite)  # bad input fails before SAM-HQ is loaded
    scan_predictions(args.pred, open_split(args.split_dir))
    refiner = SamHQRefiner.from_config(cfg)
    summary = refine_predictions(refiner, args.pred, args.split_dir, args.out, overwrite=args.overwrite,
                                 window=max(16, cfg.batch_size), progress=not args.quiet)
    print(f"refined {summary['masks']} masks of {summary['videos']} videos into {args.out}")


def cmd_refdavis(args) -> None:
    from rvos.data.splits import open_split
    from rvos.eval.refdavis import evaluate_refdavis
    from rvos.fileio import write_json

    open_split(args.split_dir)  # a bad split fails before the model is loaded
    pred = args.pred
    if pred is None:  # predict every expression first (complete videos already there are kept)
        from rvos.engine.predict_split import predict_split

        pred = args.out / "expressions"
        predict_split(_predictor(args), args.split_dir, pred, progress=not args.quiet)
    result = evaluate_refdavis(args.split_dir, pred, args.davis, args.out, task=args.task, subset=args.set).to_json()
    if args.json:
        write_json(args.json, result, indent=1)
    from rvos.eval.davis import MEASURES

    print(f"Ref-DAVIS17 ({args.task}): the mean of the four annotator sets, then each")
    print(f"{'':<8}" + "".join(f"{m:>10}" for m in MEASURES))
    rows = [("mean", result), *result["per_annotator"].items()]
    for name, table in rows:
        print(f"{name:<8}" + "".join(f"{table[m]:>10.3f}" for m in MEASURES))


def cmd_predict(args) -> None:
    from rvos.api import Segmenter, predict_to_folder

    texts = args.text or []
    if not texts or any(not t.strip() for t in texts):
        raise DataError("give each sentence with --text, and none of them empty (e.g. --text \"the dog running\")")
    from rvos.data.video import open_video

    source = open_video(args.video)  # a bad video fails before the model is loaded
    if args.strict and source.warnings:
        raise DataError("\n".join(source.warnings) + "\n(--strict: without it, the frames that can be read are "
                        "segmented and these problems are recorded in result.json)")
    out = args.out or Path("predictions") / source.name
    _check_output(out, args.overwrite)
    from rvos.engine.checkpoint import find_model, load_model

    model_path = _model_path(args.run, "--run") if args.run else _model_path(args.weights, "--weights")
    model, cfg = load_model(find_model(model_path), device=args.device or "cpu")
    segmenter = Segmenter(model, cfg, device=args.device or "cpu", window=args.window, score_threshold=args.threshold,
                          refine=_refine_config(args, cfg) or False)
    summary = predict_to_folder(segmenter, source, texts, out, overwrite=args.overwrite,
                                overlay_video=not args.no_video, progress=not args.quiet)
    print(f"{summary['frames']} frames -> {out}")
    for s in summary["sentences"]:
        print(f"  {s['text']!r}: a mask in {s['frames_with_mask']} frames ({out / s['masks']})")
    if not args.no_video:
        print(f"  overlay video: {out / 'overlay.mp4'}")


def cmd_demo(args) -> None:
    from rvos.demo import run_demo

    summary = run_demo(args.out, run=args.run, minutes=args.minutes, device=args.device, progress=not args.quiet)
    print("on the synthetic valid_u split:")
    _print_eval(summary["scores"])
    print(f"report: {summary['report']} (and {summary['html']})")


def cmd_serve(args) -> None:
    from rvos.api import Segmenter
    from rvos.serve import serve

    run = args.run
    if run is None:
        if not Path("demo/run").is_dir():
            raise RvosError("no model: pass --run RUN_DIR (a trained run or model folder), or run `rvos demo` first "
                            "to train one into demo/run")
        run = Path("demo/run")
    segmenter = Segmenter.from_pretrained(_model_path(run, "--run"), device=args.device or "cpu")
    serve(segmenter, port=args.port, host=args.host, max_frames=args.max_frames, max_upload_mb=args.max_upload_mb,
          announce=lambda url: print(f"serving on {url} (Ctrl+C to stop)", flush=True))


# ----------------------------------------------------------------------------------------------- parser


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="a bundled config's name (e.g. vlm_tiny_synth) or a YAML file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")


def _add_refine_switch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refine", action="store_true",
                   help="refine every mask with SAM-HQ (the model config's infer.refine settings, or the defaults)")
    p.add_argument("--sam", help="SAM-HQ weights for --refine (implies it): a local folder or a Hugging Face repo id "
                   f"(default: infer.refine.sam, else {SAM_HQ_VIT_L})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvos", description="Referring video object segmentation toolkit.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic motion benchmark (MeViS layout)")
    p.add_argument("out", type=Path, help="folder to write train/, valid_u/ and valid/ into")
    spec = SynthSpec()  # the defaults
    p.add_argument("--train", type=int, default=spec.train, help=f"training videos (default {spec.train})")
    p.add_argument("--valid-u", type=int, default=spec.valid_u,
                   help=f"annotated validation videos (default {spec.valid_u})")
    p.add_argument("--valid", type=int, default=spec.valid,
                   help=f"validation videos without masks (default {spec.valid})")
    p.add_argument("--seed", type=int, default=spec.seed)
    p.add_argument("--frames", type=int, default=spec.frames, help=f"frames per video (default {spec.frames})")
    p.add_argument("--height", type=int, default=spec.height, help=f"frame height (default {spec.height})")
    p.add_argument("--width", type=int, default=spec.width, help=f"frame width (default {spec.width})")
    p.add_argument("--overwrite", action="store_true", help="replace a benchmark already in OUT")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("eval", help="J, F and J&F of predictions against an annotated split")
    p.add_argument("--gt", required=True, type=Path, help="split folder (e.g. mevis/valid_u), with --task a DAVIS "
                   "folder, or a COCO-format ground truth JSON (A2D / JHMDB-Sentences)")
    p.add_argument("--pred", required=True, type=Path, help="predictions: PRED/<video>/<exp_id>/<frame>.png")
    p.add_argument("--json", type=Path, help="write the scores (per expression, by kind, missing) here; when "
                   "predictions are missing, every missing or wrong file instead")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score missing or wrong-size predictions 0 and list them, instead of failing")
    p.add_argument("--task", choices=["semi-supervised", "unsupervised"],
                   help="the DAVIS 2017 benchmark: --gt is a DAVIS folder (ImageSets/, Annotations*/480p/), --pred "
                        "holds PRED/<sequence>/<frame>.png with object (or proposal) ids; prints the official table")
    p.add_argument("--set", default="val", help="with --task: the DAVIS set (default val)")
    p.add_argument("--map-predictions", choices=["all", "best"], default="all",
                   help="A2D / JHMDB-Sentences (--gt and --pred COCO-format JSON files): which predictions enter the "
                        "mAP: every query's (MTTR's and ReferFormer's evaluation, default) or each image's best")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("refdavis", help="the Ref-DAVIS17 protocol: predict, score each annotator set with the DAVIS "
                       "2017 code, average the four")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder (its last checkpoint)")
    source.add_argument("--weights", type=Path, help="a model folder or its model.safetensors")
    source.add_argument("--pred", type=Path, help="per-expression predictions already made (rvos infer)")
    p.add_argument("--split-dir", required=True, type=Path,
                   help="Ref-DAVIS17 in the Ref-YouTube-VOS layout (ReferFormer's convert_davis_to_ytvos.py), e.g. "
                        "ref-davis/valid")
    p.add_argument("--davis", required=True, type=Path, help="the DAVIS 2017 folder (ImageSets/, Annotations*/480p/)")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for expressions/ (the predictions) and anno_0..anno_3/ (the DAVIS results)")
    p.add_argument("--task", choices=["semi-supervised", "unsupervised"], default="unsupervised",
                   help="the DAVIS task each set is scored with (default unsupervised, as ReferFormer's eval_davis.py)")
    p.add_argument("--set", default="val", help="the DAVIS set (default val)")
    p.add_argument("--json", type=Path, help="write the mean and the four tables here")
    p.add_argument("--window", type=int, help="frames encoded at once (default: the config's infer.window)")
    p.add_argument("--threshold", type=float, help="referring score threshold (default: the config's)")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    _add_refine_switch(p)
    p.set_defaults(func=cmd_refdavis)

    p = sub.add_parser("export-masks", help="write a split's ground truth as PNGs in the prediction layout")
    p.add_argument("--gt", required=True, type=Path, help="split folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=cmd_export_masks)

    p = sub.add_parser("export-coco", help="write a dataset's COCO-format ground truth (A2D-Sentences, "
                       "JHMDB-Sentences), as rvos eval and the official evaluation read it")
    p.add_argument("dataset", choices=["a2d-sentences", "jhmdb-sentences"])
    p.add_argument("root", type=Path, help="the dataset folder (A2D: Release/ and text_annotations/; JHMDB: "
                   "jhmdb_annotation.txt, Rename_Images/, puppet_mask/)")
    p.add_argument("--subset", choices=["train", "test"], default="test", help="A2D-Sentences' subset")
    p.add_argument("--samples", type=Path, help="JHMDB-Sentences: the samples file to evaluate (default "
                   "ROOT/jhmdb_sentences_samples_metadata.json, MTTR's published 3-frame draw)")
    p.add_argument("--every-frame", action="store_true", help="JHMDB-Sentences: every frame with a mask instead of "
                   "the published draw (not comparable with the papers)")
    p.add_argument("--out", required=True, type=Path, help="output JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_export_coco)

    p = sub.add_parser("submit", help="check predictions are complete and zip them for the benchmark server")
    p.add_argument("pred", type=Path, help="predictions folder")
    p.add_argument("--split-dir", required=True, type=Path, help="the split the predictions are for")
    p.add_argument("--out", required=True, type=Path, help="zip file to write")
    p.add_argument("--json", type=Path, help="write the list of missing or wrong PNGs here (empty on success)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("info", help="build a config's model and report its parts, parameters and query counts")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="an official checkpoint -> an rvos model folder (strict: every weight checked)")
    p.add_argument("method", help="the method the checkpoint belongs to (dshmp, sgmg, mutr)")
    p.add_argument("checkpoint", type=Path, help="the official checkpoint file (e.g. DsHmp's model_final.pth)")
    p.add_argument("--out", type=Path, required=True, help="folder to write model.safetensors and config.json into")
    p.add_argument("--config", help="the config the checkpoint was trained with (default: the config of the "
                                    "method's release, e.g. dshmp_swin_t_mevis; for MUTR the one its backbone names)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.text.model=DIR")
    p.add_argument("--trust-pickle", action="store_true",
                   help="read a checkpoint that holds more than tensors with pickle in full (only for files you trust)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train a model (single process, or one per device under torchrun)")
    p.add_argument("--config", help="a bundled config's name or a YAML file (not with --resume)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("infer", help="predict every expression of a split (the layout rvos eval reads)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder (its last checkpoint)")
    source.add_argument("--weights", type=Path, help="a model folder or its model.safetensors")
    p.add_argument("--split-dir", required=True, type=Path, help="the split to predict")
    p.add_argument("--out", required=True, type=Path, help="predictions folder")
    p.add_argument("--instances", help="for MUTR's instance queries: a video instance segmentation model's results "
                                       "(YouTube-VIS JSON), or 'annotated' for the split's annotated objects")
    p.add_argument("--instance-videos", type=Path, help="the VIS dataset JSON the --instances results refer to")
    p.add_argument("--window", type=int, help="frames encoded at once (default: the config's infer.window)")
    p.add_argument("--threshold", type=float, help="referring score threshold (default: the config's)")
    p.add_argument("--overwrite", action="store_true", help="predict videos whose predictions are already there")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    _add_refine_switch(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("refine", help="refine any method's predictions with SAM-HQ (box and points from each mask)")
    p.add_argument("pred", type=Path, help="predictions: PRED/<video>/<exp_id>/<frame>.png (rvos infer's output)")
    p.add_argument("--split-dir", required=True, type=Path, help="the split the predictions were made for")
    p.add_argument("--out", required=True, type=Path, help="folder for the refined predictions (same layout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (once the new one is complete)")
    p.add_argument("--sam", default=SAM_HQ_VIT_L, help="SAM-HQ weights: a local folder (save_pretrained layout) or a "
                   f"Hugging Face repo id in the cache (default {SAM_HQ_VIT_L}, the report's ViT-L)")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="SAM-HQ's precision (default float32; bfloat16 on GPUs)")
    p.add_argument("--batch-size", type=int, default=4, help="frames encoded at once (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the point sampling (default 0)")
    p.add_argument("--positive-points", type=int, default=10, help="points inside each mask (default 10)")
    p.add_argument("--negative-points", type=int, default=5,
                   help="points outside each mask, inside its box (default 5)")
    p.add_argument("--hq-token-only", action="store_true",
                   help="the HQ token's mask alone (default: SAM's and the HQ token's logits added, HQ-SAM's default)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("predict", help="segment what sentences refer to in your own video")
    p.add_argument("video", type=Path, help="a video file (mp4, avi, webm, ...), a .gif, or a folder of frames")
    p.add_argument("--text", action="append", help="a sentence; repeat for several")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a run folder (its last checkpoint)")
    source.add_argument("--weights", type=Path, help="a model folder or its model.safetensors")
    p.add_argument("--out", type=Path, help="output folder (default predictions/<video name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-video", action="store_true", help="masks only, no overlay video")
    p.add_argument("--strict", action="store_true",
                   help="fail when frames of the video cannot be decoded or decode with errors (by default they "
                        "are reported as warnings and in result.json)")
    p.add_argument("--window", type=int, help="frames encoded at once (default: the config's infer.window)")
    p.add_argument("--threshold", type=float, help="referring score threshold (default: the config's)")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    _add_refine_switch(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="synthetic benchmark -> train the tiny model -> evaluate -> report (CPU, minutes)")
    p.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default demo/)")
    p.add_argument("--run", type=Path, help="reuse this trained run instead of training")
    p.add_argument("--minutes", type=float, default=7.0, help="training time (default 7)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="a web page to run a model on uploaded videos (needs the 'web' extra)")
    p.add_argument("--run", type=Path, help="a trained run or model folder (default demo/run)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--max-frames", type=int, default=300, help="longest video accepted (frames)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted (MB)")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # rvos's own messages at INFO (WARNING with -q); other libraries' (open_clip's "Parsing tokenizer ...") only
    # when they are warnings
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("rvos").setLevel(logging.WARNING if args.quiet else logging.INFO)
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers can be set
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        args.func(args)
    except RvosError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
