"""Speech-to-geometry quality on the test sentences: LVE, EVE, mean vertex error, emotion accuracy.

    python benchmarks/s2g_quality.py --data DIR --checkpoint CKPT \
        [--emotion-checkpoint CKPT] [--ablation-checkpoint CKPT] [--quick]

Rows (the same test clips and frames for all):
- `s2g`: the S2GModule checkpoint, driven by each clip's audio and its labelled emotion.
- `template`: the template baseline, no motion (the subject's neutral mesh every frame).
- `no_emotion`: the no-emotion ablation, the same model trained with `use_emotion: false`
  (`--ablation-checkpoint`), skipped when not given.
- `s2g_auto_emotion`: the model driven by the emotion the extractor predicts from the audio
  (`--emotion auto`), when `--emotion-checkpoint` is given.
Emotion extractor: 8-way accuracy and intensity error on the same clips.

LVE: per frame the largest L2 error over lip points, averaged over all test frames (mm). EVE:
the same over the eye/brow region. MVE: mean L2 error over all points and frames. Frames are
pooled over clips. Prints a table, then one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_emotion_extractor, machine_line  # noqa: E402

from emotalk3d.constants import EMOTIONS, emotion_vector
from emotalk3d.data.speech_data import S2GDataModule, collate_clips
from emotalk3d.training.metrics import mean_error_per_frame, region_max_error_per_frame

machine = machine_line  # one line naming the machine (benchmarks/_common.py)


class FramePool:
    """Per-frame errors pooled over clips (so every test frame weighs the same)."""

    def __init__(self) -> None:
        self.lve: list[torch.Tensor] = []
        self.eve: list[torch.Tensor] = []
        self.mve: list[torch.Tensor] = []

    def add(
        self,
        pred: torch.Tensor,  # [B, T, P, 3]
        batch: dict[str, torch.Tensor],
    ) -> None:
        target, mask = batch["meshes"], batch["frame_mask"]
        self.lve.append(region_max_error_per_frame(pred, target, batch["lips"])[mask])
        self.eve.append(region_max_error_per_frame(pred, target, batch["eyes"])[mask])
        self.mve.append(mean_error_per_frame(pred, target)[mask])

    def result(self) -> dict[str, float]:
        return {
            name: float(torch.cat(vals).mean())
            for name, vals in (("lve_mm", self.lve), ("eve_mm", self.eve), ("mve_mm", self.mve))
        }


def load_s2g(path: str):
    from emotalk3d.training.s2g_module import S2GModule

    module = S2GModule.load_from_checkpoint(path, map_location="cpu").eval()
    ck = torch.load(path, map_location="cpu", weights_only=False)
    info = {"global_step": int(ck.get("global_step", 0)), "train_seconds": ck.get("train_seconds")}
    return module, info


def emotion_from_extractor(
    extractor_module,
    batch: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # [B, E], [B] labels, [B] intensity
    """The extractor's emotion vectors for a batch (argmax label at the predicted intensity)."""
    out = extractor_module(batch["audio"], batch["audio_lengths"])
    labels = out.logits.argmax(dim=-1)
    vecs = torch.stack(
        [
            emotion_vector(EMOTIONS[int(k)], float(i))
            for k, i in zip(labels, out.intensity.clamp(0, 1), strict=True)
        ]
    )
    return vecs, labels, out.intensity


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset folder (dataset format)")
    ap.add_argument("--checkpoint", required=True, help="S2GModule .ckpt")
    ap.add_argument(
        "--emotion-checkpoint",
        default=None,
        help="EmotionModule .ckpt, or a bundle folder (its extractor, e.g. checkpoints/demo)",
    )
    ap.add_argument("--ablation-checkpoint", default=None, help="S2GModule .ckpt, use_emotion off")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="first 2 clips only (for tests)")
    args = ap.parse_args(argv)
    with torch.no_grad():
        return evaluate(args)


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation `main` describes; prints the table and the RESULT line."""
    model, info = load_s2g(args.checkpoint)
    hp = model.hparams
    dm = S2GDataModule(
        args.data,
        subjects=model.subject_names,
        fps=hp.fps,
        batch_size=args.batch_size,
        max_seconds=None,
    )
    clips = dm.clips(args.split)
    if args.quick:
        clips = clips[:2]
    if not clips:
        raise SystemExit(f"{args.data} has no {args.split!r} clips")
    regions = {k: v for k, v in dm.regions.items() if k in ("lips", "eyes")}
    batches = [
        collate_clips(clips[i : i + args.batch_size], dm.templates, regions)
        for i in range(0, len(clips), args.batch_size)
    ]
    num_frames = sum(int(b["frame_mask"].sum()) for b in batches)
    audio_seconds = sum(float(b["audio_lengths"].sum()) for b in batches) / 16000

    pools = {"s2g": FramePool(), "template": FramePool()}
    t0 = time.perf_counter()
    for b in batches:
        pools["s2g"].add(model.predict_batch(b), b)
    s2g_seconds = time.perf_counter() - t0
    for b in batches:
        pools["template"].add(b["template"][:, None].expand_as(b["meshes"]), b)

    ablation_info = None
    if args.ablation_checkpoint:
        ablation, ablation_info = load_s2g(args.ablation_checkpoint)
        if ablation.hparams.use_emotion:
            print("warning: the ablation checkpoint was trained WITH emotion", file=sys.stderr)
        if ablation.subject_names != model.subject_names:
            raise SystemExit("the ablation was trained on other subjects than the model")
        pools["no_emotion"] = FramePool()
        for b in batches:
            pools["no_emotion"].add(ablation.predict_batch(b), b)

    emotion = None
    if args.emotion_checkpoint:
        extractor, trained = load_emotion_extractor(args.emotion_checkpoint)
        correct, total, abs_err = 0, 0, 0.0
        per_class = torch.zeros(len(EMOTIONS), 2)
        pools["s2g_auto_emotion"] = FramePool()
        for b in batches:
            vecs, labels, intensity = emotion_from_extractor(extractor, b)
            hit = labels == b["label"]
            correct += int(hit.sum())
            total += len(labels)
            abs_err += float((intensity - b["intensity"]).abs().sum())
            for k, h in zip(b["label"].tolist(), hit.tolist(), strict=True):
                per_class[k] += torch.tensor([float(h), 1.0])
            auto = dict(b, emotion=vecs)
            pools["s2g_auto_emotion"].add(model.predict_batch(auto), auto)
        emotion = {
            "accuracy": correct / total,
            "intensity_mae": abs_err / total,
            "per_class": {
                EMOTIONS[k]: float(per_class[k, 0] / per_class[k, 1])
                for k in range(len(EMOTIONS))
                if per_class[k, 1] > 0
            },
            "global_step": trained["steps"],
            "train_seconds": trained["seconds"],
        }

    rows = {name: pool.result() for name, pool in pools.items()}
    print(
        f"S2G quality on {len(clips)} {args.split} clips ({num_frames} frames, "
        f"{audio_seconds:.1f} s of audio) of {args.data}"
    )
    print(f"machine: {machine()}")
    print(f"{'model':18s} {'LVE mm':>8s} {'EVE mm':>8s} {'MVE mm':>8s}")
    for name, r in rows.items():
        print(f"{name:18s} {r['lve_mm']:8.3f} {r['eve_mm']:8.3f} {r['mve_mm']:8.3f}")
    if emotion is not None:
        print(
            f"emotion extractor: accuracy {100 * emotion['accuracy']:.1f}% (8-way), intensity "
            f"MAE {emotion['intensity_mae']:.3f}"
        )
        print(
            "  per class: "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in emotion["per_class"].items())
        )

    s2g, tmpl = rows["s2g"], rows["template"]
    result = {
        "split": args.split,
        "clips": len(clips),
        "frames": num_frames,
        "lve_mm": s2g["lve_mm"],
        "eve_mm": s2g["eve_mm"],
        "mve_mm": s2g["mve_mm"],
        "baseline_template_lve_mm": tmpl["lve_mm"],
        "baseline_template_eve_mm": tmpl["eve_mm"],
        "baseline_template_mve_mm": tmpl["mve_mm"],
        "lve_ratio_to_template": s2g["lve_mm"] / max(tmpl["lve_mm"], 1e-9),
        "ablation_no_emotion_lve_mm": rows.get("no_emotion", {}).get("lve_mm"),
        "ablation_no_emotion_eve_mm": rows.get("no_emotion", {}).get("eve_mm"),
        "ablation_no_emotion_mve_mm": rows.get("no_emotion", {}).get("mve_mm"),
        "auto_emotion_lve_mm": rows.get("s2g_auto_emotion", {}).get("lve_mm"),
        "auto_emotion_eve_mm": rows.get("s2g_auto_emotion", {}).get("eve_mm"),
        "emotion_accuracy": None if emotion is None else emotion["accuracy"],
        "emotion_intensity_mae": None if emotion is None else emotion["intensity_mae"],
        "s2g_train_steps": info["global_step"],
        "s2g_train_seconds": info["train_seconds"],
        "ablation_train_steps": None if ablation_info is None else ablation_info["global_step"],
        "ablation_train_seconds": None if ablation_info is None else ablation_info["train_seconds"],
        "emotion_train_steps": None if emotion is None else emotion["global_step"],
        "emotion_train_seconds": None if emotion is None else emotion["train_seconds"],
        "s2g_inference_realtime_factor": s2g_seconds / max(audio_seconds, 1e-9),
        "machine": machine(),
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
