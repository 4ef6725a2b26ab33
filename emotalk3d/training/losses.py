"""Training losses as pure functions (DESIGN.md sections 2 and 6.2).

Vertex losses for S2GNet: a per-point reconstruction term (MSE or Huber on the xyz error, in
millimetres) with per-point weights that make the lip region count more, and a velocity term on
the difference of consecutive frames. Every function takes an optional frame mask so padded
frames of a batch of different lengths contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

VERTEX_LOSS_KINDS = ("mse", "huber")


def region_weights(
    num_points: int,
    region: Tensor | None = None,  # [P] or [B, P] bool
    region_weight: float = 1.0,
) -> Tensor:  # [P] or [B, P]
    """Per-point weights: 1 everywhere, `region_weight` on the points of `region` (e.g. lips)."""
    if region is None:
        return torch.ones(num_points)
    if region.shape[-1] != num_points:
        raise ValueError(f"region mask must have P = {num_points} entries, got {region.shape}")
    return 1.0 + (float(region_weight) - 1.0) * region.float()


def _masked_mean(
    values: Tensor,  # [B, T, P]
    point_weights: Tensor | None,  # [P] or [B, P]
    frame_mask: Tensor | None,  # [B, T] bool
) -> Tensor:  # []
    """Weighted mean over points, then mean over the valid frames of the batch."""
    if point_weights is None:
        per_frame = values.mean(dim=-1)  # [B, T]
    else:
        w = point_weights.to(values)
        w = w[:, None, :] if w.ndim == 2 else w  # [B, 1, P] or [P]
        per_frame = (values * w).sum(dim=-1) / w.sum(dim=-1)  # [B, T]
    if frame_mask is None:
        return per_frame.mean()
    m = frame_mask.to(per_frame)
    return (per_frame * m).sum() / m.sum().clamp_min(1.0)


def _point_loss(
    pred: Tensor,  # [B, T, P, 3]
    target: Tensor,  # [B, T, P, 3]
    kind: str,
    huber_delta: float,
) -> Tensor:  # [B, T, P]
    if kind == "mse":
        return (pred - target).square().sum(dim=-1)
    if kind == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=huber_delta).sum(dim=-1)
    raise ValueError(f"loss kind must be one of {VERTEX_LOSS_KINDS}, got {kind!r}")


def _check(pred: Tensor, target: Tensor, frame_mask: Tensor | None) -> None:
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"pred and target must both be [B, T, P, 3], got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    if frame_mask is not None and frame_mask.shape != pred.shape[:2]:
        raise ValueError(
            f"frame_mask must be [B, T] = {list(pred.shape[:2])}, got {list(frame_mask.shape)}"
        )


def vertex_loss(
    pred: Tensor,  # [B, T, P, 3] mm
    target: Tensor,  # [B, T, P, 3] mm
    point_weights: Tensor | None = None,  # [P] or [B, P]
    frame_mask: Tensor | None = None,  # [B, T] bool, True on real (unpadded) frames
    kind: str = "mse",
    huber_delta: float = 1.0,
) -> Tensor:  # []
    """Per-point reconstruction loss: squared (or Huber) xyz error, weighted mean over points.

    Args:
        pred: predicted points.
        target: ground-truth points.
        point_weights: per-point weights (see `region_weights`); None weighs points equally.
        frame_mask: valid frames; None means all.
        kind: "mse" (squared L2 distance per point) or "huber" (Huber per coordinate, summed).
        huber_delta: Huber's transition point in mm.

    Returns:
        Scalar loss (mm^2 for "mse").
    """
    _check(pred, target, frame_mask)
    return _masked_mean(_point_loss(pred, target, kind, huber_delta), point_weights, frame_mask)


def velocity_loss(
    pred: Tensor,  # [B, T, P, 3] mm
    target: Tensor,  # [B, T, P, 3] mm
    point_weights: Tensor | None = None,  # [P] or [B, P]
    frame_mask: Tensor | None = None,  # [B, T] bool
    kind: str = "mse",
    huber_delta: float = 1.0,
) -> Tensor:  # []
    """Loss on the motion between consecutive frames: x[t + 1] - x[t] of pred vs target.

    A pair of frames counts only when both are valid. Zero for single-frame sequences.
    """
    _check(pred, target, frame_mask)
    if pred.shape[1] < 2:
        return pred.sum() * 0.0
    dp = pred[:, 1:] - pred[:, :-1]  # [B, T-1, P, 3]
    dt = target[:, 1:] - target[:, :-1]
    pair_mask = None if frame_mask is None else frame_mask[:, 1:] & frame_mask[:, :-1]
    return _masked_mean(_point_loss(dp, dt, kind, huber_delta), point_weights, pair_mask)
