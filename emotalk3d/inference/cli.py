"""`emotalk3d render` (and `python render.py`): audio + emotion ► video, and `emotalk3d bundle`.

    emotalk3d render --audio a.wav --emotion angry --view 30
    emotalk3d render --audio a.wav --emotion happy:0.7,surprised:0.3 --views -30,0,30
    emotalk3d render --audio a.wav --emotion auto --views orbit --resolution 512
    emotalk3d bundle --s2g S2G.ckpt --emotion EMOTION.ckpt --subject SUBJECT.ckpt --out FOLDER

Every input is validated before any model is loaded; a bad one exits with status 2 and a
message naming the fix, and no output file is left behind (all writers are atomic).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("mp4", "png", "ply")


def register(subparsers) -> None:
    """Add the `render` and `bundle` commands to the top-level `emotalk3d` parser."""
    p = subparsers.add_parser(
        "render",
        help="render a talking-head video from speech audio and an emotion",
        description="Speech audio + an emotion -> a video of the talking head from the "
        "viewpoint(s) you choose (H.264 + AAC mp4 with the input audio), PNG frames, or "
        "per-frame Gaussians (.ply).",
    )
    add_render_arguments(p)
    p.set_defaults(handler=run_render)

    b = subparsers.add_parser(
        "bundle",
        help="export trained checkpoints as an inference bundle folder",
        description="Build the inference bundle `emotalk3d render --checkpoint` reads from the "
        "Lightning checkpoints of `lightning fit -c configs/s2g.yaml`, `configs/emotion.yaml` "
        "and `configs/subject.yaml`.",
    )
    b.add_argument("--s2g", type=Path, required=True, help="S2GModule checkpoint (.ckpt)")
    b.add_argument("--emotion", type=Path, required=True, help="EmotionModule checkpoint (.ckpt)")
    b.add_argument(
        "--subject",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="SubjectModule checkpoint (.ckpt) or appearance export (.safetensors); repeat for "
        "several subjects (the first is the default)",
    )
    b.add_argument(
        "--rig",
        default=None,
        help="face rig for ARKit export, KIND:SIZE as `emotalk3d data synth` used "
        "(e.g. builtin:tiny, ict:small)",
    )
    b.add_argument(
        "--head-rank",
        type=int,
        default=None,
        help="factorise S2GNet's output head to this rank by truncated SVD (smaller files; "
        "the demo uses 64)",
    )
    b.add_argument(
        "--storage-dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="precision of the stored weights (float16 halves the bundle; loaded as float32)",
    )
    b.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    b.set_defaults(handler=run_bundle)


def add_render_arguments(p: argparse.ArgumentParser) -> None:
    """The render options (shared by `emotalk3d render` and render.py)."""
    p.add_argument("--audio", type=Path, required=True, help="speech audio (wav, flac, ogg, mp3)")
    p.add_argument(
        "--emotion",
        default="neutral",
        help="an emotion (neutral, angry, contempt, disgusted, fear, happy, sad, surprised), "
        "`auto` (the emotion extractor decides from the audio) or a mix such as "
        "happy:0.7,surprised:0.3 (default: neutral)",
    )
    p.add_argument(
        "--intensity",
        type=float,
        default=None,
        help="emotion intensity in [0, 1] (0.5 mild, 1 strong; default 1, or the extractor's "
        "for auto)",
    )
    p.add_argument("--view", type=float, default=None, help="camera yaw in degrees (default 0)")
    p.add_argument(
        "--views",
        default=None,
        help="comma-separated yaws (one video each), or `orbit` for a moving camera",
    )
    p.add_argument("--pitch", type=float, default=0.0, help="camera pitch in degrees (up > 0)")
    p.add_argument(
        "--distance", type=float, default=None, help="camera distance in mm (default: capture's)"
    )
    p.add_argument("--resolution", type=int, default=256, help="square image size in pixels")
    p.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    p.add_argument("--subject", default=None, help="subject of the bundle (default: its first)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="inference bundle folder (default: the built-in demo, checkpoints/demo)",
    )
    p.add_argument("--backend", choices=("auto", "torch", "gsplat"), default="auto")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    p.add_argument("--format", choices=FORMATS, default="mp4", dest="out_format")
    p.add_argument(
        "--arkit",
        action="store_true",
        help="also write ARKit blendshapes (Live Link Face CSV + JSON) next to the output",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (mp4) or folder (png, ply); default: next to the audio, "
        "<audio stem>_<emotion>_view<deg>.mp4",
    )
    p.add_argument("--batch-size", type=int, default=4, help="frames rendered together")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ------------------------------------------------------------------------------ validation
@dataclass
class RenderPlan:
    """Everything `run_render` does, decided and validated before any heavy work."""

    audio: object  # Tensor [S], 16 kHz mono
    duration: float
    num_frames: int
    weights: dict[str, float] | None  # None: auto
    intensity: float | None
    views: list[float] | str
    outputs: list[Path]  # one per view (mp4/png) or one folder (ply)
    arkit: list[Path] = field(default_factory=list)  # csv, json
    checkpoint: Path = Path()
    subject: str | None = None
    device: str = "cpu"
    audio_path: Path | None = None  # the input file, muxed into mp4s as it is


def _yaw_list(text: str) -> list[float] | str:
    if text.strip().lower() == "orbit":
        return "orbit"
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(
                f"--views must be comma-separated yaw degrees (e.g. -30,0,30) or `orbit`; "
                f"{item.strip()!r} is not a number"
            ) from None
        out.append(value)
    return out


def _suffixed(path: Path, extra: str) -> Path:
    return path.with_name(f"{path.stem}_{extra}{path.suffix}")


def plan_render(args: argparse.Namespace) -> RenderPlan:
    """Validate the arguments (cheap checks and audio decoding only) and decide the outputs.

    Raises:
        FileNotFoundError, ValueError: with a message naming the bad input and the fix.
    """
    import torch

    from emotalk3d.audio.load import SAMPLE_RATE, load_audio
    from emotalk3d.inference.checkpoint import DEMO_BUNDLE, appearance_subjects, read_manifest
    from emotalk3d.inference.pipeline import (
        check_intensity,
        emotion_label,
        num_output_frames,
        parse_emotion,
        view_name,
    )
    from emotalk3d.render.video import check_writable

    if not Path(args.audio).exists():
        raise FileNotFoundError(
            f"audio file not found: {args.audio}; give --audio a wav, flac, ogg or mp3 file"
        )
    if args.intensity is not None:
        check_intensity(args.intensity)
    weights = parse_emotion(args.emotion, args.intensity)
    if args.view is not None and args.views is not None:
        raise ValueError("give --view or --views, not both")
    views: list[float] | str = [0.0] if args.view is None else [args.view]
    if args.views is not None:
        views = _yaw_list(args.views)
    if views != "orbit" and not all(math.isfinite(v) for v in views):
        raise ValueError(f"view angles must be finite numbers of degrees, got {views}")
    for name in ("pitch", "fps"):
        if not math.isfinite(getattr(args, name)):
            raise ValueError(f"--{name} must be a finite number, got {getattr(args, name)}")
    if not 0 < args.fps <= 240:
        raise ValueError(f"--fps must lie in (0, 240], got {args.fps}")
    if args.distance is not None and not (math.isfinite(args.distance) and args.distance > 0):
        raise ValueError(f"--distance must be a positive number of mm, got {args.distance}")
    if not 8 <= args.resolution <= 4096:
        raise ValueError(f"--resolution must lie in [8, 4096] pixels, got {args.resolution}")
    if args.out_format == "mp4" and args.resolution % 2:
        raise ValueError(
            f"--resolution must be even for mp4 (H.264 4:2:0), got {args.resolution}; "
            f"use {args.resolution + 1}"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"--device {device!r} is not a torch device ({err}); use cpu or cuda"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available; use --device cpu")
    if args.backend == "gsplat" and dev.type != "cuda":
        raise ValueError(
            "--backend gsplat needs a CUDA device (gsplat's rasterizer is CUDA-only); use "
            "--backend torch or auto on this machine"
        )
    checkpoint = DEMO_BUNDLE if args.checkpoint is None else args.checkpoint
    manifest = read_manifest(checkpoint)
    subjects = appearance_subjects(manifest)
    if args.subject is not None and args.subject not in subjects:
        raise ValueError(
            f"unknown --subject {args.subject!r}; the bundle {checkpoint} has: "
            f"{', '.join(subjects)}"
        )
    if args.arkit and "rig" not in manifest["components"]:
        raise ValueError(
            f"--arkit needs a bundle with a face rig, and {checkpoint} has none; re-export it "
            "with `emotalk3d bundle ... --rig builtin:small`"
        )

    audio = load_audio(args.audio)  # FileNotFoundError / AudioError (a ValueError)
    if audio.shape[0] < 400:
        raise ValueError(
            f"{args.audio} is too short ({audio.shape[0]} samples at 16 kHz); "
            "give at least 25 ms of speech"
        )
    duration = audio.shape[0] / SAMPLE_RATE
    num_frames = num_output_frames(audio.shape[0], args.fps)

    label = emotion_label(weights)
    names = ["orbit"] if views == "orbit" else [view_name(v) for v in views]
    audio_path = Path(args.audio)
    if args.out_format == "ply":
        base = args.out or audio_path.with_name(f"{audio_path.stem}_{label}_gaussians")
        outputs = [base]
    else:
        ext = ".mp4" if args.out_format == "mp4" else ""
        if args.out is None:
            outputs = [audio_path.with_name(f"{audio_path.stem}_{label}_{n}{ext}") for n in names]
        elif len(names) == 1:
            outputs = [args.out]
        else:
            outputs = [_suffixed(args.out, n) for n in names]
    for out in outputs:
        if args.out_format == "mp4" and out.suffix.lower() != ".mp4":
            raise ValueError(
                f"the mp4 output must end in .mp4, got {out}; use --format png or ply for folders"
            )
        if args.out_format != "mp4" and out.exists() and not out.is_dir():
            raise ValueError(f"{args.out_format} output {out} exists and is not a folder")
        check_writable(out if args.out_format == "mp4" else out.with_name(out.name + ".check"))
    arkit = []
    if args.arkit:
        stem = outputs[0].with_suffix("") if args.out_format == "mp4" else outputs[0]
        arkit = [
            stem.with_name(stem.name + "_arkit.csv"),
            stem.with_name(stem.name + "_arkit.json"),
        ]
        for path in arkit:
            check_writable(path)
    return RenderPlan(
        audio=audio,
        audio_path=audio_path,
        duration=duration,
        num_frames=num_frames,
        weights=weights,
        intensity=args.intensity,
        views=views,
        outputs=outputs,
        arkit=arkit,
        checkpoint=Path(checkpoint),
        subject=args.subject,
        device=device,
    )


# ------------------------------------------------------------------------------ folder writers
class _FolderWriter:
    """Files into a temporary folder beside `path`, renamed into place on `close` (atomic)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        )
        self.count = 0

    def close(self) -> Path:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes it private
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ the command
def run_render(args: argparse.Namespace) -> int:
    """Handler of `emotalk3d render`; returns the exit status."""
    plan = plan_render(args)  # every check happens here, before any model is loaded
    return execute(plan, args)


def execute(plan: RenderPlan, args: argparse.Namespace) -> int:
    """Load the bundle and render `plan` (see `plan_render`)."""
    import numpy as np
    from tqdm import tqdm

    from emotalk3d.audio.load import SAMPLE_RATE
    from emotalk3d.gaussians.ply import save_ply
    from emotalk3d.geometry.arkit import write_arkit_json, write_live_link_csv
    from emotalk3d.inference.pipeline import TalkingHead, rechunk
    from emotalk3d.render.video import Mp4Writer, save_png_atomic

    t0 = time.perf_counter()
    head = TalkingHead.from_checkpoints(
        plan.checkpoint, device=plan.device, backend=args.backend, subject=plan.subject
    )
    choice = head.resolve_emotion(
        "auto" if plan.weights is None else plan.weights, plan.audio, plan.intensity
    )
    print(f"emotion: {choice.describe()}")
    fps = args.fps
    audio = plan.audio
    writers: list = []
    arkit_rows: list = []
    bar = tqdm(
        total=plan.num_frames, unit="frame", desc="render", disable=args.no_progress, leave=False
    )
    try:
        if args.out_format == "ply":
            writer = _FolderWriter(plan.outputs[0])
            writers.append(writer)
            frame = 0
            stream = rechunk(head.iter_geometry(audio, choice, fps), args.batch_size)
            for pts in stream:
                g = head.gaussians(pts, choice)
                for t in range(pts.shape[0]):
                    f = g.frame(t)
                    save_ply(
                        writer.tmp / f"frame_{frame:05d}.ply",
                        f["means"],
                        f["quats"],
                        f["scales"],
                        f["opacities"],
                        f["sh"],
                    )
                    frame += 1
                if plan.arkit:
                    arkit_rows.append(head.arkit_weights(pts))
                bar.update(pts.shape[0])
        else:
            cams = head.cameras(
                plan.views,
                args.resolution,
                pitch=args.pitch,
                distance=args.distance,
                num_frames=plan.num_frames,
            )
            for out in plan.outputs:
                if args.out_format == "mp4":
                    writers.append(
                        Mp4Writer(
                            out,
                            fps,
                            args.resolution,
                            args.resolution,
                            plan.audio_path or audio.numpy(),  # the input file as it is
                            SAMPLE_RATE,
                        )
                    )
                else:
                    writers.append(_FolderWriter(out))
            frames = head(
                audio, choice, cams, sample_rate=SAMPLE_RATE, fps=fps, batch_size=args.batch_size
            )
            for batch in frames:
                for c, writer in enumerate(writers):
                    if args.out_format == "mp4":
                        writer.write(batch.images[:, c])
                    else:
                        for i in range(batch.images.shape[0]):
                            name = f"frame_{batch.start + i:05d}.png"
                            save_png_atomic(writer.tmp / name, batch.images[i, c])
                if plan.arkit:
                    arkit_rows.append(head.arkit_weights(batch.geometry))
                bar.update(batch.images.shape[0])
        bar.close()
        for w in writers:  # every output complete before any is moved into place
            if isinstance(w, Mp4Writer):
                w.finish()
        done = [w.close() for w in writers]
        writers = []
        if plan.arkit:
            weights = np.concatenate(arkit_rows)
            write_live_link_csv(plan.arkit[0], weights, fps)
            write_arkit_json(plan.arkit[1], weights, fps)
    except BaseException:
        bar.close()
        for w in writers:
            w.abort()
        raise
    elapsed = time.perf_counter() - t0
    rtf = elapsed / plan.duration
    print(
        f"rendered {plan.num_frames} frames x {len(done) if args.out_format != 'ply' else 1} "
        f"view(s), {plan.duration:.2f} s of audio at {fps:g} fps in {elapsed:.1f} s: real-time "
        f"factor {rtf:.2f} (processing time / audio duration; below 1 is faster than real time)"
    )
    for path in done + plan.arkit:
        print(f"wrote {path}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    """Handler of `emotalk3d bundle`."""
    from emotalk3d.inference.checkpoint import export_bundle

    pairs = [item.partition("=") for item in args.subject]
    if any(sep for _, sep, _ in pairs):  # named: NAME=PATH (unnamed ones get subject<i>)
        subjects: dict[str, str] | list[str] = {
            (name if sep else f"subject{i}"): (path if sep else name)
            for i, (name, sep, path) in enumerate(pairs)
        }
    else:  # unnamed: named after S2GNet's training subjects
        subjects = list(args.subject)
    folder = export_bundle(
        args.out,
        args.s2g,
        args.emotion,
        subjects,
        rig=args.rig,
        head_rank=args.head_rank,
        storage_dtype=args.storage_dtype,
    )
    print(f"wrote the inference bundle {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python render.py ...`: the render command on its own (same options, same exit codes)."""
    parser = argparse.ArgumentParser(
        prog="render.py",
        description="Render a talking-head video from speech audio and an emotion "
        "(the same as `emotalk3d render`).",
    )
    add_render_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_render(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
