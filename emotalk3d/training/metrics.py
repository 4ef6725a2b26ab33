"""Geometry metrics of speech-driven face animation, in millimetres (pure functions).

- LVE, lip vertex error (MeshTalk, FaceFormer): per frame, the largest L2 error over the lip
  points; averaged over frames.
- EVE, emotional vertex error (EmoTalk3D, EMOTE): the same over the eye/brow region (`eyes`),
  the part of the face that carries the emotion rather than the speech.
- MVE, mean vertex error: the L2 error averaged over all points and frames.

Each metric has a per-frame form ([B, T]) so evaluations over many sequences can pool frames
before averaging; the scalar forms average the valid frames of a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(
            f"pred and target must both be [B, T, P, 3], got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )


def point_errors(
    pred: Tensor,  # [B, T, P, 3]
    target: Tensor,  # [B, T, P, 3]
) -> Tensor:  # [B, T, P]
    """Per-point L2 distance."""
    _check(pred, target)
    return (pred - target).norm(dim=-1)


def region_max_error_per_frame(
    pred: Tensor,  # [B, T, P, 3]
    target: Tensor,  # [B, T, P, 3]
    region: Tensor,  # [P] or [B, P] bool
) -> Tensor:  # [B, T]
    """Per frame, the maximum L2 error over the points of `region`."""
    err = point_errors(pred, target)  # [B, T, P]
    region = region.to(device=err.device, dtype=torch.bool)
    if region.shape[-1] != err.shape[-1] or region.ndim not in (1, 2):
        raise ValueError(
            f"region must be [P] or [B, P] with P = {err.shape[-1]}, got {region.shape}"
        )
    if not bool(region.any(dim=-1).all()):
        raise ValueError("region mask selects no point; expected at least one True entry")
    mask = region[:, None, :] if region.ndim == 2 else region  # [B, 1, P] or [P]
    return err.masked_fill(~mask, float("-inf")).amax(dim=-1)


def mean_error_per_frame(
    pred: Tensor,  # [B, T, P, 3]
    target: Tensor,  # [B, T, P, 3]
) -> Tensor:  # [B, T]
    """Per frame, the L2 error averaged over all points."""
    return point_errors(pred, target).mean(dim=-1)


def masked_frame_mean(
    per_frame: Tensor,  # [B, T]
    frame_mask: Tensor | None = None,  # [B, T] bool
) -> Tensor:  # []
    """Mean of a per-frame value over the valid frames (all when `frame_mask` is None)."""
    if frame_mask is None:
        return per_frame.mean()
    if frame_mask.shape != per_frame.shape:
        raise ValueError(
            f"frame_mask must be {list(per_frame.shape)}, got {list(frame_mask.shape)}"
        )
    m = frame_mask.to(per_frame.dtype)
    return (per_frame.nan_to_num(neginf=0.0) * m).sum() / m.sum().clamp_min(1.0)


def lip_vertex_error(
    pred: Tensor,  # [B, T, P, 3] mm
    target: Tensor,  # [B, T, P, 3] mm
    lips: Tensor,  # [P] or [B, P] bool
    frame_mask: Tensor | None = None,  # [B, T] bool
) -> Tensor:  # [] mm
    """LVE: per frame the maximal L2 error over lip points, averaged over (valid) frames."""
    return masked_frame_mean(region_max_error_per_frame(pred, target, lips), frame_mask)


def emotional_vertex_error(
    pred: Tensor,  # [B, T, P, 3] mm
    target: Tensor,  # [B, T, P, 3] mm
    eyes: Tensor,  # [P] or [B, P] bool, the eye/brow region
    frame_mask: Tensor | None = None,  # [B, T] bool
) -> Tensor:  # [] mm
    """EVE: LVE's definition over the eye/brow region (the emotional upper face)."""
    return masked_frame_mean(region_max_error_per_frame(pred, target, eyes), frame_mask)


def mean_vertex_error(
    pred: Tensor,  # [B, T, P, 3] mm
    target: Tensor,  # [B, T, P, 3] mm
    frame_mask: Tensor | None = None,  # [B, T] bool
) -> Tensor:  # [] mm
    """MVE: the L2 error averaged over all points and (valid) frames."""
    return masked_frame_mean(mean_error_per_frame(pred, target), frame_mask)
