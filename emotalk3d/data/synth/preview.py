"""Contact sheets: a grid of images (rows = cameras, columns = frames) with labels, as one PNG.

Used by `emotalk3d data preview DIR` to eyeball a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_H = 14  # pixels of the column-label band
LABEL_W = 56  # pixels of the row-label band


def _to_uint8(img: np.ndarray) -> np.ndarray:  # [H, W, 3] any -> uint8
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"each image must be [H, W, 3] (or [H, W]), got shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return a


def contact_sheet(
    images: Sequence[Sequence[np.ndarray]] | np.ndarray,  # [R][Cols] of [H, W, 3]
    row_labels: Sequence[str] | None = None,  # [R] e.g. camera ids
    col_labels: Sequence[str] | None = None,  # [Cols] e.g. "frame 12"
    path: str | Path | None = None,
    gap: int = 2,
    background: tuple[int, int, int] = (32, 32, 32),
) -> Image.Image:
    """Tile a grid of equally sized images into one labelled picture.

    Args:
        images: rows of images (rows = cameras, columns = frames); uint8 or float in [0, 1].
        row_labels: one label per row, drawn in a band on the left.
        col_labels: one label per column, drawn in a band on top.
        path: where to save the PNG (parent folders are created); None to only return it.
        gap: pixels between tiles.
        background: RGB of the gaps and label bands.

    Returns:
        The sheet as a PIL image.
    """
    rows = [[_to_uint8(im) for im in row] for row in images]
    if not rows or not rows[0]:
        raise ValueError("contact_sheet needs at least one row with one image")
    ncol = len(rows[0])
    if any(len(r) != ncol for r in rows):
        raise ValueError(f"every row needs {ncol} images, got {[len(r) for r in rows]}")
    h, w = rows[0][0].shape[:2]
    if any(im.shape[:2] != (h, w) for r in rows for im in r):
        raise ValueError("all images of a contact sheet must share one size")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"got {len(row_labels)} row labels for {len(rows)} rows")
    if col_labels is not None and len(col_labels) != ncol:
        raise ValueError(f"got {len(col_labels)} column labels for {ncol} columns")
    x0 = LABEL_W if row_labels is not None else 0
    y0 = LABEL_H if col_labels is not None else 0
    W = x0 + ncol * w + (ncol + 1) * gap
    H = y0 + len(rows) * h + (len(rows) + 1) * gap
    sheet = Image.new("RGB", (W, H), background)
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            sheet.paste(Image.fromarray(im), (x0 + gap + c * (w + gap), y0 + gap + r * (h + gap)))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if col_labels is not None:
        for c, text in enumerate(col_labels):
            draw.text((x0 + gap + c * (w + gap) + 2, 1), str(text), fill=(230, 230, 230), font=font)
    if row_labels is not None:
        for r, text in enumerate(row_labels):
            y = y0 + gap + r * (h + gap) + h // 2 - 6
            draw.text((2, y), str(text)[:9], fill=(230, 230, 230), font=font)
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(p)
    return sheet
