"""Real spherical harmonics (degree 0-3) for view-dependent Gaussian colour.

The basis, its signs and its ordering are those of 3D Gaussian Splatting and gsplat (so .ply
files and gsplat's `spherical_harmonics` agree with us): for band l the K = (l + 1)^2
coefficients are ordered m = -l..l, and a colour is

    rgb = max(0, sum_k Y_k(d) * coeffs[k] + 0.5)

with d the unit direction from the camera centre to the Gaussian's mean. The `+ 0.5` and the
clamp are the rasterizer's activation (`emotalk3d.render.rasterize.activate`); this module
only evaluates the sum. `tests/render/test_reference_vs_gsplat.py` pins the basis against
gsplat's pure-torch `_spherical_harmonics`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

MAX_SH_DEGREE = 3

# Y_0^0 and the band 1-3 normalisation constants (real SH, Condon-Shortley phase folded in).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients K = (degree + 1)^2 of a degree."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_bases(num_bases: int) -> int:
    """The SH degree whose coefficient count is `num_bases` (1, 4, 9 or 16).

    Raises:
        ValueError: `num_bases` is not (d + 1)^2 for d in 0..3.
    """
    degree = math.isqrt(max(num_bases, 0)) - 1
    if degree < 0 or (degree + 1) ** 2 != num_bases or degree > MAX_SH_DEGREE:
        raise ValueError(
            f"expected K = (degree + 1)^2 SH coefficients with degree 0..{MAX_SH_DEGREE} "
            f"(K in 1, 4, 9, 16); got K = {num_bases}"
        )
    return degree


def eval_sh_bases(
    degree: int,
    dirs: Tensor,  # [..., 3] unit directions
) -> Tensor:  # [..., (degree + 1)^2]
    """The real SH basis functions up to `degree` at unit directions (differentiable)."""
    num_sh_bases(degree)
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        bases += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        bases += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(bases, dim=-1)


def eval_sh(
    degree: int,
    dirs: Tensor,  # [..., 3] any length (normalised here)
    coeffs: Tensor,  # [..., K, 3] with K >= (degree + 1)^2
) -> Tensor:  # [..., 3]
    """Evaluate SH colour sum_k Y_k(d) coeffs[k] with the first (degree + 1)^2 coefficients.

    Coefficients beyond the degree are ignored (gsplat's progressive "partial bands"). The
    result is *before* the `+ 0.5` offset and clamp.
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k or coeffs.shape[-1] != 3:
        raise ValueError(
            f"coeffs must be [..., K, 3] with K >= {k} for degree {degree}; got "
            f"{tuple(coeffs.shape)}"
        )
    unit = torch.nn.functional.normalize(dirs, dim=-1)
    bases = eval_sh_bases(degree, unit)  # [..., k]
    return (bases[..., None] * coeffs[..., :k, :]).sum(dim=-2)


def rgb_to_sh0(
    rgb: Tensor,  # [..., 3]
) -> Tensor:  # [..., 3]
    """The DC coefficient whose colour (C0 * sh0 + 0.5) is `rgb`."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(
    sh0: Tensor,  # [..., 3]
) -> Tensor:  # [..., 3]
    """The colour of a DC coefficient, C0 * sh0 + 0.5 (unclamped)."""
    return sh0 * SH_C0 + 0.5
