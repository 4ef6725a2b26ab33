"""Opacity blending between canonical and dynamic OTF Gaussians (DESIGN.md §2).

Each out-of-face (OTF) Gaussian exists in two copies at render time: the *canonical* copy at
its canonical mean μ_o (static: hair, shoulders far from the face) and the *dynamic* copy moved
by head completion. With d the distance to the nearest face point,

    W_p = 0                 for d < d0
        = (d − d0) / d_th   for d0 <= d <= d0 + d_th
        = 1                 for d > d0 + d_th,         d0 = 5 mm, d_th = 10 mm,

the canonical copy's opacity is multiplied by W_p and the dynamic copy's by (1 − W_p). Face
Gaussians have W_p = 0 (they are dynamic only). A copy whose weight is exactly 0 contributes
nothing and is left out of the frame (the selection is precomputed with the weights).

Raw parameters and the single activation. Opacities are stored as logits and the rasterizer is
the only place that applies the sigmoid. Blending multiplies *activated* opacities, so this
module rewrites a weighted logit exactly: `weighted_opacity_logit(a, w) = logit(sigmoid(a) · w)`,
computed in log space (log σ(a) + log w, then log p − log(1 − p)), so the rasterizer's sigmoid
gives back exactly σ(a) · w. (An additive `log w` would be only an approximation of this.)

Every function here is pure.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_D0 = 5.0  # mm
DEFAULT_D_TH = 10.0  # mm


def blend_weights(
    distance: Tensor,  # [M] distance to the nearest face point, mm
    d0: float = DEFAULT_D0,
    d_th: float = DEFAULT_D_TH,
) -> Tensor:  # [M] W_p in [0, 1]
    """W_p: 0 below d0, a linear ramp over d_th, 1 beyond d0 + d_th."""
    if d0 < 0 or d_th <= 0:
        raise ValueError(f"need d0 >= 0 and d_th > 0 (mm), got d0={d0}, d_th={d_th}")
    return ((distance - d0) / d_th).clamp(0.0, 1.0)


def weighted_opacity_logit(
    logits: Tensor,  # [...] raw opacity logits a
    weights: Tensor,  # [...] (broadcastable) multipliers w in [0, 1]
    eps: float = 1e-12,
) -> Tensor:  # [...] logit(sigmoid(a) · w)
    """Exact logit of the weighted activated opacity σ(a) · w, stable in log space.

    Weights are clamped below at `eps` (a zero weight gives a very negative logit; callers drop
    those Gaussians anyway). Differentiable in both arguments.
    """
    w = weights.to(logits.dtype).clamp(min=eps, max=1.0)
    log_p = torch.nn.functional.logsigmoid(logits) + torch.log(w)  # log(σ(a) w) <= 0
    # log(1 − p) = log1p(−exp(log p)); p < 1 whenever a is finite.
    log_1mp = torch.log1p(-torch.exp(log_p).clamp(max=1.0 - 1e-7))
    return log_p - log_1mp


def blend_selection(
    weights: Tensor,  # [M] W_p
) -> tuple[Tensor, Tensor]:  # ([M_c] canonical-copy indices, [M_d] dynamic-copy indices)
    """Which OTF Gaussians render a canonical copy (W_p > 0) and which a dynamic copy (W_p < 1)."""
    canonical = torch.nonzero(weights > 0, as_tuple=False).flatten()
    dynamic = torch.nonzero(weights < 1, as_tuple=False).flatten()
    return canonical, dynamic
