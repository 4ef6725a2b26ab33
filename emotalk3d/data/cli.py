"""`emotalk3d data synth|check|preview`: generate, validate and preview datasets.

    emotalk3d data synth --rig builtin --size tiny --subjects 1 --seed 0 --out data/tiny
    emotalk3d data check data/tiny
    emotalk3d data preview data/tiny --frames 6 --out preview.png

Heavy imports happen inside the handlers so `emotalk3d --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    """Add the `data` command group to the top-level `emotalk3d` parser."""
    p = subparsers.add_parser("data", help="generate, check and preview datasets")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    s = sub.add_parser(
        "synth",
        help="generate a synthetic multi-view talking-head dataset (dataset format v1)",
        description="Generate a synthetic dataset with exact ground truth: speech (espeak-ng), "
        "per-frame meshes of a face rig, calibrated multi-view images and masks.",
    )
    s.add_argument(
        "--rig",
        choices=("builtin", "ict"),
        default="builtin",
        help="face rig: the built-in procedural head or the ICT Face Model Light",
    )
    s.add_argument(
        "--size",
        choices=("tiny", "small", "full"),
        default="tiny",
        help="size preset (docs/dataset.md): tiny for tests, small for the CPU demo, full for GPU",
    )
    s.add_argument(
        "--subjects", type=int, default=None, help="number of subjects (default: the size preset's)"
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    s.add_argument("--out", type=Path, required=True, help="output dataset folder")
    s.add_argument(
        "--ict-path",
        type=Path,
        default=None,
        help="ICT Face Model Light .npz (default: ../shared/assets or $EMOTALK3D_ICT_MODEL)",
    )
    s.add_argument("--cameras", type=int, default=None, help="number of cameras on the arc")
    s.add_argument("--resolution", type=int, default=None, help="square image size in pixels")
    s.add_argument("--fps", type=float, default=25.0, help="motion frame rate")
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(handler=_synth)

    c = sub.add_parser("check", help="validate a dataset and print its summary")
    c.add_argument("dir", type=Path, help="dataset folder (or one subject folder)")
    c.add_argument(
        "--quick", action="store_true", help="only check that images exist, without decoding them"
    )
    c.set_defaults(handler=_check)

    v = sub.add_parser("preview", help="write a contact sheet PNG (cameras x frames)")
    v.add_argument("dir", type=Path, help="dataset folder")
    v.add_argument("--subject", default=None, help="subject name (default: the first)")
    v.add_argument(
        "--sequence",
        default=None,
        help="sequence name (default: the first non-neutral one with images)",
    )
    v.add_argument("--frames", type=int, default=6, help="number of frames (columns)")
    v.add_argument("--out", type=Path, required=True, help="output PNG")
    v.set_defaults(handler=_preview)

    p.set_defaults(handler=lambda args: _group_help(p))


def _group_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _report(report, stream=None) -> None:
    from emotalk3d.data.format import format_summary

    print(format_summary(report.summary), file=stream or sys.stdout)


def _synth(args: argparse.Namespace) -> int:
    from emotalk3d.data.format import check_dataset
    from emotalk3d.data.synth.generate import generate_dataset

    t0 = time.perf_counter()
    out = generate_dataset(
        args.out,
        rig=args.rig,
        size=args.size,
        subjects=args.subjects,
        seed=args.seed,
        progress=not args.no_progress,
        ict_path=args.ict_path,
        num_cameras=args.cameras,
        resolution=args.resolution,
        fps=args.fps,
    )
    elapsed = time.perf_counter() - t0
    report = check_dataset(out, decode_images=False)
    print(f"wrote {out} in {elapsed:.1f} s")
    _report(report)
    if not report.ok:
        for problem in report.problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    from emotalk3d.data.format import check_dataset

    report = check_dataset(args.dir, decode_images=not args.quick)
    _report(report)
    if report.ok:
        print("ok: no problems found")
        return 0
    print(f"{len(report.problems)} problem(s):")
    for problem in report.problems:
        print(f"  - {problem}")
    return 1


def _preview(args: argparse.Namespace) -> int:
    from emotalk3d.data.synth.generate import write_preview

    path = write_preview(
        args.dir, args.out, subject=args.subject, sequence=args.sequence, frames=args.frames
    )
    print(f"wrote {path}")
    return 0
