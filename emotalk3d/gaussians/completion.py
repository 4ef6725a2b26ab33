"""Head completion: out-of-face (OTF) Gaussians follow their nearest face point (DESIGN.md §2).

An OTF point o with nearest dense face point f(o) at distance d(o) moves at frame t by

    Δo_t = (μ_t[f(o)] − μ_o[f(o)]) · exp(−α · d(o)),     α = 0.1 per mm,

so hair and neck next to the jaw follow it, and points far from the face stay put. The nearest
face point and the decay weight are precomputed once per subject (and refreshed while training,
when densification adds OTF points or the OTF means move); applying them is one gather and one
multiply for any number of frames.

Every function here is pure: tensors in, tensors out.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

DEFAULT_ALPHA = 0.1  # per mm


def nearest_face_points(
    points: Tensor,  # [M, 3] OTF positions, mm
    face_points: Tensor,  # [V, 3] dense face positions, mm
) -> tuple[Tensor, Tensor]:  # ([M] int64 index into face_points, [M] distance in mm)
    """Index of and distance to each point's nearest face point (exact, scipy cKDTree).

    Not differentiable (the result is a fixed assignment); the result lives on `points`'
    device with `points`' float dtype.
    """
    if points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [M, 3], got {tuple(points.shape)}")
    if face_points.ndim != 2 or face_points.shape[-1] != 3 or face_points.shape[0] == 0:
        raise ValueError(
            f"face_points must have shape [V, 3] with V > 0, got {tuple(face_points.shape)}"
        )
    if points.shape[0] == 0:
        empty = torch.zeros(0, device=points.device)
        return empty.long(), empty.to(points.dtype)
    tree = cKDTree(face_points.detach().cpu().double().numpy())
    dist, idx = tree.query(points.detach().cpu().double().numpy(), k=1)
    idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(points.device)
    dist_t = torch.from_numpy(np.asarray(dist)).to(device=points.device, dtype=points.dtype)
    return idx_t, dist_t


def motion_decay(
    distance: Tensor,  # [M] mm
    alpha: float = DEFAULT_ALPHA,
) -> Tensor:  # [M]
    """The completion weight exp(−α d) (α per mm)."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0 (per mm), got {alpha}")
    return torch.exp(-alpha * distance)


def complete_motion(
    face_motion: Tensor,  # [..., V, 3] μ_t − μ_o of the dense face points
    nearest: Tensor,  # [M] int64 index into V
    decay: Tensor,  # [M] exp(−α d)
) -> Tensor:  # [..., M, 3]
    """Motion of the OTF points: their nearest face point's motion times the decay weight."""
    if face_motion.shape[-1] != 3:
        raise ValueError(f"face_motion must end in 3 coordinates, got {tuple(face_motion.shape)}")
    assert nearest.shape == decay.shape, (nearest.shape, decay.shape)
    return face_motion.index_select(-2, nearest) * decay[:, None].to(face_motion.dtype)
