"""Reference images of the viewer's splats for the browser tests (Chromium and Firefox): the
binary layouts of docs/viewer.md read independently of the server's code, the project's torch
rasterizer drawing the same splats from the page's camera, and image comparisons."""

from __future__ import annotations

import math

import numpy as np


def foreground(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:  # [H, W] bool
    """Pixels that differ from the background colour by more than 24 levels in a channel."""
    diff = np.abs(pixels.astype(np.int16) - background.astype(np.int16)[None, None, :])
    return diff.max(axis=-1) > 24


def read_canonical(data: bytes) -> dict[str, np.ndarray]:
    """The "E3DC" layout of docs/viewer.md, read independently of the server's code."""
    assert data[:4] == b"E3DC" and len(data) >= 16
    version, n, _ = np.frombuffer(data, "<u4", 3, 4)
    assert version == 1 and len(data) == 16 + n * 44
    o = 16
    means = np.frombuffer(data, "<f4", 3 * n, o).reshape(n, 3)  # [N, 3] mm
    scales = np.frombuffer(data, "<f4", 3 * n, o + 12 * n).reshape(n, 3)  # [N, 3] mm
    quats = np.frombuffer(data, "<f4", 4 * n, o + 24 * n).reshape(n, 4)  # [N, 4] wxyz
    rgba = np.frombuffer(data, "u1", 4 * n, o + 40 * n).reshape(n, 4)  # [N, 4]
    return {"means": means, "scales": scales, "quats": quats, "rgba": rgba}


def read_frame(data: bytes, k: int) -> dict[str, np.ndarray]:
    """Frame `start + k` of an "E3DF" answer (docs/viewer.md)."""
    assert data[:4] == b"E3DF" and len(data) >= 32
    version, n, _start, count = np.frombuffer(data, "<u4", 4, 4)
    mean_bytes = (6 * n + 3) // 4 * 4
    stride = mean_bytes + 8 * n
    assert version == 1 and len(data) == 32 + count * stride and 0 <= k < count
    o = 32 + k * stride
    means = np.frombuffer(data, "<f2", 3 * n, o).reshape(n, 3).astype(np.float32)  # [N, 3]
    quats = np.frombuffer(data, "i1", 4 * n, o + mean_bytes).reshape(n, 4) / 127.0  # [N, 4]
    rgba = np.frombuffer(data, "u1", 4 * n, o + mean_bytes + 4 * n).reshape(n, 4)  # [N, 4]
    return {"means": means, "quats": quats.astype(np.float32), "rgba": rgba}


def reference_image(
    splats: dict[str, np.ndarray], camera: dict, width: int, height: int, background
) -> np.ndarray:  # [H, W, 3] uint8
    """The same splats rendered by the project's torch rasterizer from the page's orbit camera
    (yaw/pitch about `target` at `distance`, 30 degree vertical fov; OpenCV convention)."""
    import torch

    from emotalk3d.render.cameras import intrinsics_from_fov, orbit_camera
    from emotalk3d.render.rasterize import render_gaussians

    sh_c0 = 0.28209479177387814  # colour = SH_DC * C0 + 0.5 for a DC-only colour
    alpha = np.clip(splats["rgba"][:, 3] / 255.0, 1e-4, 1 - 1e-4)
    viewmat = orbit_camera(
        math.degrees(camera["yaw"]),
        math.degrees(camera["pitch"]),
        camera["distance"],
        camera["target"],
    )
    out = render_gaussians(
        torch.tensor(splats["means"], dtype=torch.float32),
        torch.tensor(splats["quats"], dtype=torch.float32),
        torch.log(torch.tensor(splats["scales"], dtype=torch.float32)),
        torch.logit(torch.tensor(alpha, dtype=torch.float32)),
        torch.tensor((splats["rgba"][:, :3] / 255.0 - 0.5) / sh_c0, dtype=torch.float32),
        torch.tensor(viewmat, dtype=torch.float32)[None],
        torch.tensor(intrinsics_from_fov(30.0, width, height), dtype=torch.float32)[None],
        width,
        height,
        backend="torch",
        background=torch.tensor(background, dtype=torch.float32),
        render_depth=False,
    )
    return (out.image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255**2 / max(mse, 1e-12))
