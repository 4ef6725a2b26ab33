"""Appearance quality of a trained subject on held-out cameras and test sentences.

    python benchmarks/appearance_quality.py --data DIR --checkpoint CKPT \
        [--s2g-checkpoint CKPT] [--quick]

PSNR and SSIM, over the whole image and over the mouth region (a box around the projected lip
and mouth-interior points of the frame, grown by a margin), on the held-out validation cameras
of the test sentences (val sentences when there are no test ones with images). Geometry:

(a) the dataset's meshes; (b) S2GNet's prediction from the sentence's audio and emotion, when
    `--s2g-checkpoint` is given (skipped otherwise).

Variants (same frames, cameras and geometry): full model; canonical only (no G2ANet); no
opacity blending (every OTF Gaussian a dynamic copy at full opacity); no head completion (OTF
Gaussians static). Prints a table, then one line `RESULT {json}`.

`--checkpoint` is a Lightning checkpoint of SubjectModule (.ckpt) or an appearance export
(.safetensors + .json from `SubjectModule.export_appearance`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line  # noqa: E402

from emotalk3d.constants import EMOTION_DIM
from emotalk3d.data.image_data import FrameRef, SubjectDataModule
from emotalk3d.gaussians.model import GaussianHead, load_appearance, render_frame
from emotalk3d.render.cameras import project_points
from emotalk3d.training.image_losses import box_crop, psnr, ssim

VARIANTS: dict[str, dict[str, bool]] = {
    "full": {},
    "canonical_only": {"use_g2anet": False},
    "no_blending": {"use_blending": False},
    "no_completion": {"use_completion": False},
}


def load_head(path: Path) -> tuple[GaussianHead, dict]:
    """The GaussianHead of a SubjectModule checkpoint or an appearance export, plus info."""
    if path.suffix == ".safetensors":
        meta = json.loads(path.with_suffix(".json").read_text())
        return load_appearance(path), {"global_step": meta.get("global_step")}
    from emotalk3d.training.subject_module import SubjectModule

    module = SubjectModule.load_from_checkpoint(path, map_location="cpu")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    module.head.refresh_completion()
    info = {
        "global_step": int(ck.get("global_step", 0)),
        "train_seconds": ck.get("train_seconds"),
        "background": module.background.tolist(),
    }
    return module.head, info


def mouth_box(
    points: torch.Tensor,  # [P, 3] the frame's sparse face points
    region: np.ndarray,  # [P] bool
    K: torch.Tensor,  # [3, 3]
    w2c: torch.Tensor,  # [4, 4]
    width: int,
    height: int,
    margin: float = 0.25,
) -> tuple[int, int, int, int]:  # (x0, y0, x1, y1)
    """Pixel box around the projected mouth points, grown by `margin` of its size per side."""
    uv, _ = project_points(points[torch.from_numpy(region)].double(), w2c.double(), K.double())
    lo, hi = uv.min(0).values, uv.max(0).values
    pad = (hi - lo) * margin + 2.0
    x0, y0 = (lo - pad).floor().long().tolist()
    x1, y1 = (hi + pad).ceil().long().tolist()
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def s2g_geometry(module, dm: SubjectDataModule, seq_idx: int) -> torch.Tensor:  # [T, P, 3]
    """S2GNet's predicted sparse points for a sequence (from its audio and emotion)."""
    seq = dm.sequences[seq_idx]
    audio, sr = seq.load_audio()
    if sr != 16000:
        raise ValueError(f"{seq.path}: audio must be 16 kHz for S2GNet, got {sr}")
    names = module.subject_names
    sid = names.index(dm.subject.name) if dm.subject.name in names else 0
    template = torch.as_tensor(dm.template.vertices, dtype=torch.float32)[None]
    with torch.no_grad():
        pred = module(
            torch.as_tensor(audio, dtype=torch.float32)[None],
            template,
            dm.sequence_emotion(seq_idx)[None],
            torch.tensor([sid]),
            num_frames=seq.meta.num_frames,
        )
    return pred[0]


def evaluate(
    head: GaussianHead,
    dm: SubjectDataModule,
    frames: list[FrameRef],
    geometry: dict[int, torch.Tensor],  # sequence -> [T, P, 3]
    background: torch.Tensor,  # [3]
    backend: str,
    variants: dict[str, dict[str, bool]],
) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM (whole image, mouth box) of each variant over frames x val cameras."""
    regions = dm.template.regions
    mouth = regions.get("lips", np.zeros(0, bool)).copy()
    if "mouth_interior" in regions:
        mouth |= regions["mouth_interior"]
    sums = {v: {"psnr": 0.0, "ssim": 0.0, "mouth_psnr": 0.0, "mouth_ssim": 0.0} for v in variants}
    n = 0
    for ref in frames:
        points = geometry[ref.sequence][ref.frame]  # [P, 3]
        emo = dm.sequence_emotion(ref.sequence)[None]  # [1, E]
        views = [dm.load_view(ref, c)[0] for c in dm.val_camera_idx]
        target = torch.stack(views)  # [C, H, W, 3]
        mats = [dm.camera_matrices(c) for c in dm.val_camera_idx]
        Ks = torch.stack([m[0] for m in mats])
        w2c = torch.stack([m[1] for m in mats])
        H, W = target.shape[1:3]
        boxes = [mouth_box(points, mouth, Ks[i], w2c[i], W, H) for i in range(len(mats))]
        for name, flags in variants.items():
            with torch.no_grad():
                fg = head.frame_gaussians(points[None], emo, **flags)
                img, _, _ = render_frame(
                    fg.frame(0), fg.sh_degree, w2c, Ks, W, H, background, backend
                )
            img = img.clamp(0, 1)
            s = sums[name]
            s["psnr"] += float(psnr(img, target))
            s["ssim"] += float(ssim(img, target))
            for i, box in enumerate(boxes):
                a, b = box_crop(img[i], box), box_crop(target[i], box)
                s["mouth_psnr"] += float(psnr(a, b)) / len(boxes)
                s["mouth_ssim"] += float(ssim(a, b)) / len(boxes)
        n += 1
    return {v: {k: x / max(n, 1) for k, x in s.items()} for v, s in sums.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder (or a subject folder)")
    ap.add_argument("--checkpoint", required=True, help="SubjectModule .ckpt or .safetensors")
    ap.add_argument("--s2g-checkpoint", default=None, help="S2GModule .ckpt for geometry (b)")
    ap.add_argument("--subject", default=None, help="subject folder name (default: first)")
    ap.add_argument("--quick", action="store_true", help="few frames (a smoke run)")
    ap.add_argument("--max-frames", type=int, default=None, help="frames per sequence at most")
    ap.add_argument("--image-scale", type=float, default=1.0, help="as in training")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "gsplat"))
    args = ap.parse_args(argv)

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        print(f"error: checkpoint {ckpt} does not exist", file=sys.stderr)
        return 2
    if not Path(args.data).exists():
        print(f"error: data folder {args.data} does not exist", file=sys.stderr)
        return 2
    head, info = load_head(ckpt)
    head.eval()
    background = torch.tensor(info.get("background") or [1.0, 1.0, 1.0])
    dm = SubjectDataModule(data_dir=args.data, subject=args.subject, image_scale=args.image_scale)
    dm.setup("test")
    if tuple(dm.template.vertices.shape) != tuple(head.template.shape):
        print(
            f"error: the checkpoint's template has {head.template.shape[0]} points but the "
            f"data's has {dm.template.vertices.shape[0]}: wrong subject?",
            file=sys.stderr,
        )
        return 2
    seqs = [i for i, s in enumerate(dm.sequences) if s.meta.split == "test"]
    split = "test"
    if not seqs:
        seqs, split = dm.val_sequences, "val"
    max_frames = args.max_frames or (4 if args.quick else None)
    if args.quick:
        seqs = seqs[:1]
    frames: list[FrameRef] = []
    for i in seqs:
        n = dm.sequences[i].meta.num_frames
        k = n if max_frames is None else min(n, max_frames)
        frames += [FrameRef(i, int(f)) for f in np.linspace(0, n - 1, k).round().astype(int)]
    assert EMOTION_DIM == dm.sequence_emotion(seqs[0]).shape[0]

    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    geo_a = {i: dm.sequence_meshes(i) for i in seqs}
    results["dataset"] = evaluate(head, dm, frames, geo_a, background, args.backend, VARIANTS)
    if args.s2g_checkpoint:
        from emotalk3d.training.s2g_module import S2GModule

        s2g = S2GModule.load_from_checkpoint(args.s2g_checkpoint, map_location="cpu").eval()
        geo_b = {i: s2g_geometry(s2g, dm, i) for i in seqs}
        results["s2g"] = evaluate(
            head,
            dm,
            frames,
            geo_b,
            background,
            args.backend,
            {"full": {}, "canonical_only": {"use_g2anet": False}},
        )
    else:
        results["s2g"] = None
    seconds = time.perf_counter() - t0

    cams = ",".join(dm.val_camera_ids)
    print(
        f"subject {dm.subject.name}: {len(frames)} frames of {len(seqs)} {split} sentences, "
        f"held-out cameras {cams}, {head.num_face} face + {head.num_otf} OTF Gaussians"
    )
    print(
        f"{'geometry':9s} {'variant':15s} {'PSNR':>7s} {'SSIM':>7s} {'mouthPSNR':>10s} "
        f"{'mouthSSIM':>10s}"
    )
    for geo, res in results.items():
        if res is None:
            print(f"{geo:9s} (skipped: no --s2g-checkpoint)")
            continue
        for var, m in res.items():
            print(
                f"{geo:9s} {var:15s} {m['psnr']:7.2f} {m['ssim']:7.4f} "
                f"{m['mouth_psnr']:10.2f} {m['mouth_ssim']:10.4f}"
            )
    full = results["dataset"]["full"]["mouth_psnr"]
    canon = results["dataset"]["canonical_only"]["mouth_psnr"]
    summary = {
        "subject": dm.subject.name,
        "split": split,
        "frames": len(frames),
        "cameras": dm.val_camera_ids,
        "num_face": head.num_face,
        "num_otf": head.num_otf,
        "results": results,
        "full_beats_canonical_mouth_psnr": bool(full > canon),
        "checkpoint": info,
        "eval_seconds": round(seconds, 2),
        "machine": f"{machine_line()}, threads {torch.get_num_threads()}",
    }
    print("RESULT " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
