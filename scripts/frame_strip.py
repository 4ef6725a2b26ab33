"""The README's frame strip: the demo model on an example clip, emotions by views.

    .venv/bin/python scripts/frame_strip.py [--audio CLIP] [--out docs/images/demo_strip.png]

Rows are emotions (neutral, happy, sad, angry, surprised), columns are the camera yaw (-30, 0,
30 degrees) at two instants of the clip (an open and a closed mouth), so lip sync, emotion
control and free view show in one image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from emotalk3d.inference.pipeline import TalkingHead
from emotalk3d.render.video import save_png_atomic

REPO = Path(__file__).resolve().parents[1]
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
YAWS = (-30.0, 0.0, 30.0)


def frame_strip(
    head: TalkingHead, audio: Path, resolution: int = 192
) -> np.ndarray:  # [H, W, 3] uint8
    """Render the grid: one row per emotion; yaws at the clip's widest and narrowest mouth."""
    wav = head.load_audio(audio)  # [S]
    lm = head.landmarks
    neutral = head.geometry(wav, "neutral", sample_rate=16000)  # [T, P, 3]
    opening = (neutral[:, lm["lip_upper_mid"]] - neutral[:, lm["lip_lower_mid"]]).norm(dim=-1)
    inner = opening[2:-2]  # avoid the silent ends
    frames = [int(inner.argmax()) + 2, int(inner.argmin()) + 2]
    cams = head.cameras(list(YAWS), resolution)
    rows = []
    for emotion in EMOTIONS:
        pts = head.geometry(wav, emotion, sample_rate=16000)[frames]  # [2, P, 3]
        images = head.render(head.gaussians(pts, emotion), cams)  # [2, C, H, W, 3]
        tiles = [images[f, c] for f in range(len(frames)) for c in range(len(YAWS))]
        rows.append(torch.cat(tiles, dim=1))  # [H, 6W, 3]
    grid = torch.cat(rows, dim=0)  # [5H, 6W, 3]
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=REPO / "examples" / "hello.wav")
    parser.add_argument("--checkpoint", type=Path, default=None, help="bundle (default: demo)")
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "demo_strip.png")
    args = parser.parse_args()
    head = TalkingHead.from_checkpoints(args.checkpoint, backend="torch")
    path = save_png_atomic(args.out, frame_strip(head, args.audio, args.resolution))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
