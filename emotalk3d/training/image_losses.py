"""Image losses and metrics of the appearance stage (DESIGN.md §2: L1 + 0.2 D-SSIM), pure.

SSIM follows Wang et al. (2004) with an 11x11 Gaussian window (σ = 1.5) applied as two
separable 1D convolutions, constants C1 = (0.01 L)^2 and C2 = (0.03 L)^2 for the data range L,
and "valid" borders like the 3DGS implementation's reference (pytorch-msssim) without padding
artefacts. Images are channel-last [..., H, W, 3] in [0, 1], the rasterizer's layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(
            f"pred and target must be two [..., H, W, C] images of one shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )


def l1_loss(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
) -> Tensor:  # []
    """Mean absolute error."""
    _check_pair(pred, target)
    return (pred - target).abs().mean()


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:  # [size]
    """Normalised 1D Gaussian window."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    w = torch.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _blur(x: Tensor, win: Tensor) -> Tensor:  # [B, C, H, W] -> [B, C, H-s+1, W-s+1]
    c = x.shape[1]
    k = win.shape[0]
    x = F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:  # [B, C, H - window_size + 1, W - window_size + 1]
    """Per-pixel SSIM over valid windows (leading dims folded into B)."""
    _check_pair(pred, target)
    H, W, C = pred.shape[-3:]
    if H < window_size or W < window_size:
        raise ValueError(f"images of {H}x{W} are smaller than the {window_size}px SSIM window")
    x = pred.reshape(-1, H, W, C).permute(0, 3, 1, 2)
    y = target.reshape(-1, H, W, C).permute(0, 3, 1, 2).to(x.dtype)
    win = gaussian_window(window_size, sigma, x.dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, win), _blur(y, win)
    sxx = _blur(x * x, win) - mu_x**2
    syy = _blur(y * y, win) - mu_y**2
    sxy = _blur(x * y, win) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return num / den


def ssim(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:  # []
    """Mean SSIM (1 for identical images)."""
    return ssim_map(pred, target, window_size, sigma, data_range).mean()


def dssim_loss(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
) -> Tensor:  # []
    """D-SSIM = (1 − SSIM) / 2, in [0, 1]."""
    return (1.0 - ssim(pred, target)) / 2.0


def appearance_loss(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
    dssim_weight: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:  # ([], {"l1": [], "dssim": []})
    """L1 + `dssim_weight` · D-SSIM (EmoTalk3D's appearance loss); also the two terms."""
    l1 = l1_loss(pred, target)
    ds = dssim_loss(pred, target) if dssim_weight > 0 else l1.new_zeros(())
    return l1 + dssim_weight * ds, {"l1": l1.detach(), "dssim": ds.detach()}


def psnr(
    pred: Tensor,  # [..., H, W, C]
    target: Tensor,  # [..., H, W, C]
    data_range: float = 1.0,
) -> Tensor:  # []
    """Peak signal-to-noise ratio in dB over all pixels (capped at 100 dB for equal images)."""
    _check_pair(pred, target)
    mse = ((pred - target.to(pred.dtype)) ** 2).mean()
    return (10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-10))).clamp(max=100.0)


def box_crop(
    image: Tensor,  # [..., H, W, C]
    box: tuple[int, int, int, int],  # (x0, y0, x1, y1) pixels, exclusive end
    min_size: int = 11,
) -> Tensor:  # [..., h, w, C]
    """Crop a pixel box, grown symmetrically to at least `min_size` and clamped to the image
    (so SSIM's window fits a small mouth box)."""
    H, W = image.shape[-3:-1]
    x0, y0, x1, y1 = box
    for lo_name in ("x", "y"):
        lo, hi, n = (x0, x1, W) if lo_name == "x" else (y0, y1, H)
        if hi - lo < min_size:
            grow = math.ceil((min_size - (hi - lo)) / 2)
            lo, hi = lo - grow, hi + grow
        lo, hi = max(0, lo), min(n, hi)
        if hi - lo < min_size:
            lo, hi = (0, min(n, min_size)) if lo == 0 else (max(0, n - min_size), n)
        if lo_name == "x":
            x0, x1 = lo, hi
        else:
            y0, y1 = lo, hi
    return image[..., y0:y1, x0:x1, :]
