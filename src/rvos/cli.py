"""``rvos <command>``: parses arguments, calls library functions, prints results.

Errors a user can cause (:class:`rvos.errors.RvosError`) are printed as one message and exit with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rvos.errors import RvosError


def _print_eval(result) -> None:
    out = sys.stdout
    print(f"J&F {result.JF:.4f}   J {result.J:.4f}   F {result.F:.4f}   ({len(result.per_expression)} expressions)",
          file=out)
    if result.by_kind:
        print(f"{'kind':<16}{'count':>6}{'J&F':>8}{'J':>8}{'F':>8}", file=out)
        for kind, s in result.by_kind.items():
            print(f"{kind:<16}{s['count']:>6}{s['J&F']:>8.4f}{s['J']:>8.4f}{s['F']:>8.4f}", file=out)
    if result.missing or result.wrong_size:
        print(f"scored 0: {len(result.missing)} missing and {len(result.wrong_size)} wrong-size predictions "
              "(listed in the JSON)", file=out)


# ----------------------------------------------------------------------------------------------- commands


def cmd_synth(args) -> None:
    from rvos.data.synth.generate import SynthSpec, write_benchmark

    spec = SynthSpec(train=args.train, valid_u=args.valid_u, valid=args.valid, seed=args.seed, frames=args.frames,
                     height=args.height, width=args.width)
    out = write_benchmark(args.out, spec, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {spec.train} train, {spec.valid_u} valid_u and {spec.valid} valid videos to {out}")


def cmd_eval(args) -> None:
    from rvos.eval.evaluate import evaluate
    from rvos.fileio import write_json

    result = evaluate(args.gt, args.pred, workers=args.workers, allow_missing=args.allow_missing,
                      progress=not args.quiet)
    if args.json:
        write_json(args.json, result.to_json(), indent=1)
    _print_eval(result)


def cmd_export_masks(args) -> None:
    from rvos.eval.export import export_masks

    n = export_masks(args.gt, args.out, progress=not args.quiet)
    print(f"wrote {n} mask PNGs to {args.out}")


def cmd_submit(args) -> None:
    from rvos.eval.submit import write_submission

    n = write_submission(args.split_dir, args.pred, args.out, progress=not args.quiet)
    print(f"wrote {args.out} ({n} PNGs)")


# ----------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvos", description="Referring video object segmentation toolkit.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate the synthetic motion benchmark (MeViS layout)")
    p.add_argument("out", type=Path, help="folder to write train/, valid_u/ and valid/ into")
    p.add_argument("--train", type=int, default=400, help="training videos (default 400)")
    p.add_argument("--valid-u", type=int, default=50, help="annotated validation videos (default 50)")
    p.add_argument("--valid", type=int, default=50, help="validation videos without masks (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=24, help="frames per video (default 24)")
    p.add_argument("--height", type=int, default=96, help="frame height (default 96)")
    p.add_argument("--width", type=int, default=160, help="frame width (default 160)")
    p.add_argument("--overwrite", action="store_true", help="replace a benchmark already in OUT")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("eval", help="J, F and J&F of predictions against an annotated split")
    p.add_argument("--gt", required=True, type=Path, help="split folder (e.g. mevis/valid_u)")
    p.add_argument("--pred", required=True, type=Path, help="predictions: PRED/<video>/<exp_id>/<frame>.png")
    p.add_argument("--json", type=Path, help="write the scores (per expression, by kind, missing) here")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score missing or wrong-size predictions 0 and list them, instead of failing")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export-masks", help="write a split's ground truth as PNGs in the prediction layout")
    p.add_argument("--gt", required=True, type=Path, help="split folder")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=cmd_export_masks)

    p = sub.add_parser("submit", help="check predictions are complete and zip them for the benchmark server")
    p.add_argument("pred", type=Path, help="predictions folder")
    p.add_argument("--split-dir", required=True, type=Path, help="the split the predictions are for")
    p.add_argument("--out", required=True, type=Path, help="zip file to write")
    p.set_defaults(func=cmd_submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
