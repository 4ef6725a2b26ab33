"""Emotion extractor accuracy on held-out sentences: 8-way accuracy, per class, intensity error.

    python benchmarks/emotion_accuracy.py --data DIR --checkpoint CKPT [--split test] [--quick]
        [--threads 1]

The extractor-only twin of the emotion rows of `benchmarks/s2g_quality.py`, which needs an
S2GNet checkpoint as well: the same clips (the split's whole clips, batched `--batch-size` at a
time with zero padding), the same prediction (arg-max of the logits, the predicted intensity)
and the same figures (accuracy, per-class accuracy, intensity MAE). It also reports what the
head predicts with the transformer summary zeroed ("prosody only", the condition modality
dropout trains) and the confusions. Prints a table, then one line `RESULT {json}`.
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

from emotalk3d.constants import EMOTIONS
from emotalk3d.data.speech_data import EmotionDataModule, collate_clips

machine = machine_line  # one line naming the machine (benchmarks/_common.py)


def score(
    predicted: torch.Tensor,  # [N] int64 labels
    intensity: torch.Tensor,  # [N] predicted intensity
    labels: torch.Tensor,  # [N] int64
    target_intensity: torch.Tensor,  # [N]
) -> dict:
    """Accuracy, per-class accuracy (classes present only), intensity MAE, confusion counts."""
    hit = predicted == labels
    confusion = torch.zeros(len(EMOTIONS), len(EMOTIONS), dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    per_class = {
        EMOTIONS[k]: float(hit[labels == k].float().mean())
        for k in range(len(EMOTIONS))
        if (labels == k).any()
    }
    return {
        "accuracy": float(hit.float().mean()),
        "correct": int(hit.sum()),
        "per_class": per_class,
        "intensity_mae": float((intensity - target_intensity).abs().mean()),
        "confusion": confusion.tolist(),  # [true][predicted]
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True, help="dataset folder (dataset format)")
    ap.add_argument(
        "--checkpoint",
        required=True,
        help="EmotionModule .ckpt, or an inference bundle folder (its extractor, e.g. "
        "checkpoints/demo)",
    )
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="first 2 clips only (for tests)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with torch.no_grad():
        return evaluate(args)


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation `main` describes; prints the table and the RESULT line."""
    extractor, trained = load_emotion_extractor(args.checkpoint)
    clips = EmotionDataModule(args.data, max_seconds=None).clips(args.split)
    if args.quick:
        clips = clips[:2]
    if not clips:
        raise SystemExit(f"{args.data} has no {args.split!r} clips")
    rows: dict[str, list[torch.Tensor]] = {"full": [], "prosody_only": [], "intensity": []}
    labels, target_intensity = [], []
    t0 = time.perf_counter()
    for i in range(0, len(clips), args.batch_size):
        b = collate_clips(clips[i : i + args.batch_size])
        out = extractor(b["audio"], b["audio_lengths"])
        rows["full"].append(out.logits.argmax(dim=-1))
        rows["intensity"].append(out.intensity.clamp(0, 1))
        labels.append(b["label"])
        target_intensity.append(b["intensity"])
        if extractor.prosody:
            alone = extractor(b["audio"], b["audio_lengths"], use_backbone=False)
            rows["prosody_only"].append(alone.logits.argmax(dim=-1))
    seconds = time.perf_counter() - t0
    labels_t, target_t = torch.cat(labels), torch.cat(target_intensity)
    intensity = torch.cat(rows["intensity"])
    full = score(torch.cat(rows["full"]), intensity, labels_t, target_t)
    alone = None
    if rows["prosody_only"]:
        alone = score(torch.cat(rows["prosody_only"]), intensity, labels_t, target_t)
    audio_seconds = sum(len(c.audio) for c in clips) / 16000

    print(
        f"Emotion extractor on {len(clips)} {args.split} clips ({audio_seconds:.1f} s) "
        f"of {args.data}"
    )
    steps = "a bundle" if trained["steps"] is None else f"step {trained['steps']}"
    print(f"checkpoint: {args.checkpoint} ({steps})")
    print(f"machine: {machine()}")
    print(
        f"accuracy {100 * full['accuracy']:.1f}% ({full['correct']}/{len(clips)}, 8-way), "
        f"intensity MAE {full['intensity_mae']:.3f}"
    )
    print("  per class: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in full["per_class"].items()))
    if alone is not None:
        print(f"prosody only (transformer summary zeroed): {100 * alone['accuracy']:.1f}%")
    wrong = [
        f"{c.name} -> {EMOTIONS[int(p)]}"
        for c, p in zip(clips, torch.cat(rows["full"]), strict=True)
        if int(p) != c.label
    ]
    if wrong:
        print("  wrong: " + ", ".join(wrong))
    result = {
        "split": args.split,
        "clips": len(clips),
        "emotion_accuracy": full["accuracy"],
        "emotion_correct": full["correct"],
        "emotion_per_class": full["per_class"],
        "emotion_intensity_mae": full["intensity_mae"],
        "emotion_confusion": full["confusion"],
        "prosody_only_accuracy": None if alone is None else alone["accuracy"],
        "emotion_train_steps": trained["steps"],
        "emotion_train_seconds": trained["seconds"],
        "inference_realtime_factor": seconds / max(audio_seconds, 1e-9),
        "machine": machine(),
        "threads": torch.get_num_threads(),
    }
    print("RESULT " + json.dumps(result))
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
